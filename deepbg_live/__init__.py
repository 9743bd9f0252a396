"""deepbg-live: real-time background replacement for webcams and video."""

# cv2 must be imported before av: PyAV bundles its own libxcb, and if it loads first OpenCV's Qt
# window picks it up and hangs in namedWindow. Importing the package settles the order.
import cv2  # noqa: F401, I001

__version__ = "0.1.0"
