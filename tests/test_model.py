"""The U-Net: shapes for any input size, configs, and safe weight files."""

import pickle
from dataclasses import replace

import pytest
import torch

from deepbg_live.model import CONFIGS, UNet, build_model, count_parameters, load_weights, save_weights
from deepbg_live.model_files import WEIGHTS_DIR


@pytest.mark.parametrize("size", [(1, 1), (17, 31), (144, 192), (97, 256)])
def test_output_has_the_input_size_even_when_not_a_multiple_of_the_stride(size):
    model = build_model("realtime").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 1, *size)


@pytest.mark.parametrize("name", ["mobile", "mobile-wide"])
@pytest.mark.parametrize("size", [(1, 1), (9, 1000), (17, 31), (144, 192), (97, 256)])
def test_the_mobile_family_gives_the_input_size_for_odd_sizes(name, size):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 1, *size)


def test_the_mobile_decoder_may_stop_at_half_or_quarter_resolution():
    for stride in (2, 4):
        model = build_model(replace(CONFIGS["mobile"], decoder_stride=stride)).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 50, 70)).shape == (1, 1, 50, 70)
        assert len(model.ups) == len(CONFIGS["mobile"].widths) - (stride.bit_length() - 1)


def test_the_mobile_family_costs_a_tenth_of_the_realtime_unet_in_parameters():
    assert count_parameters(build_model("mobile")) < 0.15 * count_parameters(build_model("realtime"))


def test_a_mobile_config_survives_the_json_round_trip_of_a_weights_file(tmp_path):
    save_weights(build_model("mobile"), tmp_path / "m.safetensors")
    model, _ = load_weights(tmp_path / "m.safetensors")
    assert model.config == CONFIGS["mobile"] and type(model).__name__ == "MobileUNet"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_config_builds_and_runs(name):
    model = build_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, model.config.in_channels, 33, 47)).shape == (1, 1, 33, 47)


def test_the_classic_config_is_the_original_31m_parameter_unet():
    assert 30e6 < count_parameters(build_model("classic")) < 32e6


def test_the_shipped_cpu_configs_are_small():
    assert count_parameters(build_model("realtime")) < 4e6
    assert count_parameters(build_model("fast")) < 1e6


@pytest.mark.parametrize("name", ["realtime", "fast"])
def test_each_shipped_weights_file_holds_its_named_config_and_stays_a_few_mb(name):
    path = WEIGHTS_DIR / f"{name}.safetensors"
    model, _ = load_weights(path)
    assert model.config == CONFIGS[name]
    assert path.stat().st_size < 8e6


GROWTH = {"context block": dict(context=True), "bottleneck blocks": dict(bottleneck_blocks=2)}


@pytest.mark.parametrize("growth", sorted(GROWTH))
def test_a_newly_added_block_starts_as_the_identity(growth):
    plain = UNet(replace(CONFIGS["realtime"], context=False, bottleneck_blocks=0)).eval()
    grown = UNet(replace(plain.config, **GROWTH[growth])).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert missing and not unexpected
    x = torch.randn(1, 3, 40, 60)
    with torch.no_grad():
        assert torch.equal(plain(x), grown(x))


def test_a_mobile_stage_grown_deeper_starts_as_the_identity():
    plain = build_model("mobile-video").eval()
    for norm in (m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        torch.nn.init.normal_(norm.weight)  # as trained weights are: no block is the identity
    grown = build_model("mobile-deep-video").eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert missing and not unexpected
    x = torch.randn(1, 4, 40, 60)
    with torch.no_grad():
        assert torch.allclose(plain(x), grown(x), atol=1e-6)


def test_bottleneck_blocks_add_capacity_at_the_coarsest_level_only():
    plain = UNet(replace(CONFIGS["realtime"], bottleneck_blocks=0))
    grown = UNet(replace(CONFIGS["realtime"], bottleneck_blocks=2))
    coarsest = plain.config.base * 2**plain.config.depth
    assert count_parameters(grown) > count_parameters(plain)
    for conv in (m for m in grown.bottleneck.modules() if isinstance(m, torch.nn.Conv2d)):
        assert coarsest in (conv.in_channels, conv.out_channels)


def test_the_context_block_lets_the_whole_image_change_every_pixel():
    plain = UNet(replace(CONFIGS["realtime"], context=False)).eval()
    grown = build_model("realtime").eval()
    torch.nn.init.normal_(grown.context.mix[-1].weight)
    left, right = torch.zeros(1, 3, 64, 256), torch.zeros(1, 3, 64, 256)
    right[..., 192:] = 3.0  # a change beyond the convolutions' view of the left edge
    with torch.no_grad():
        assert torch.equal(plain(left)[..., :8], plain(right)[..., :8])
        assert not torch.equal(grown(left)[..., :8], grown(right)[..., :8])


def test_unknown_config_names_the_choices():
    with pytest.raises(ValueError, match="realtime"):
        build_model("huge")


def test_saved_weights_reload_to_the_same_outputs(tmp_path):
    model = build_model("realtime").eval()
    save_weights(model, tmp_path / "m.safetensors", note="x")
    loaded, metadata = load_weights(tmp_path / "m.safetensors")
    x = torch.randn(1, 3, 40, 60)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)
    assert metadata["note"] == "x"
    assert loaded.config == model.config


def test_half_precision_weights_are_half_the_size_and_close(tmp_path):
    model = build_model("realtime").eval()
    save_weights(model, tmp_path / "full.safetensors")
    save_weights(model, tmp_path / "half.safetensors", half=True)
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (
        tmp_path / "full.safetensors"
    ).stat().st_size
    half, _ = load_weights(tmp_path / "half.safetensors")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), half(x), atol=1e-2)


class _Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_a_checkpoint_that_carries_code_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"model": _Exploit(), "config": "{}"}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_weights(path)
    assert not (tmp_path / "PWNED").exists()


HOSTILE_CONFIGS = [dict(base=2048), dict(long_side=20000), dict(depth=40), dict(widths=[4096] * 5)]


@pytest.mark.parametrize("overrides", HOSTILE_CONFIGS, ids=lambda o: next(iter(o)))
def test_a_weights_file_asking_for_a_huge_network_is_refused_before_allocating(tmp_path, overrides):
    import json
    import subprocess
    import sys

    from safetensors.torch import save_file

    config = {"name": "hostile", **overrides}
    path = tmp_path / "hostile.safetensors"
    save_file({}, str(path), metadata={"config": json.dumps(config)})
    assert path.stat().st_size < 400
    probe = (
        "import re, sys\n"
        "from deepbg_live.model import load_weights\n"
        "try:\n    load_weights(sys.argv[1])\nexcept ValueError as e:\n    print('refused:', e)\n"
        # VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) peak into ru_maxrss
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("refused: model config 'hostile' is out of range"), out.stdout + out.stderr
    peak_mb = int(lines[-1]) / 1024
    assert peak_mb < 1024, f"peak RSS {peak_mb:.0f} MB: something was allocated"


def test_a_checkpoint_named_in_upper_case_loads(tmp_path):
    path = tmp_path / "model.PT"
    model = build_model("unet8")
    torch.save({"model": model.state_dict(), "config": '{"name": "unet8", "base": 8}'}, path)
    loaded, _ = load_weights(path)
    assert loaded.config.base == 8


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (33, 17)])
def test_a_previous_mask_model_takes_four_channels_and_gives_the_input_size(size):
    net = build_model("mobile-video").eval()
    with torch.no_grad():
        out = net(torch.randn(1, 4, *size))
    assert out.shape == (1, 1, *size)
    with pytest.raises(RuntimeError):
        net(torch.randn(1, 3, *size))


def test_the_previous_mask_changes_the_answer_of_a_model_that_takes_one():
    net = build_model("mobile-video").eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        empty, full = (net(torch.cat([image, torch.full((1, 1, 64, 64), v)], 1)) for v in (0.0, 1.0))
    assert not torch.allclose(empty, full)
