"""Params: the real params.yaml loads; every kind of bad value gets a one-line error naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.config import ParamsError, flatten, load_params, params_from_dict

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
LEAVES = sorted(flatten(RAW))  # every dotted key in params.yaml


def _set(raw: dict, dotted: str, value: object) -> dict:
    out = copy.deepcopy(raw)
    node = out
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    return out


def _delete(raw: dict, dotted: str) -> dict:
    out = copy.deepcopy(raw)
    node = out
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    del node[last]
    return out


def test_real_params_load_and_flatten():
    p = load_params(ROOT / "params.yaml")
    assert p.loss.lam == RAW["loss"]["lambda"]
    flat = p.to_flat_dict()
    assert flat["loss.lambda"] == RAW["loss"]["lambda"]
    assert flat["train.lr"] == RAW["train"]["lr"]
    assert set(LEAVES) <= set(flat)


def _assert_one_line_naming(err: ParamsError, key: str) -> None:
    msg = str(err)
    assert "\n" not in msg
    assert key in msg, msg


WRONG_TYPES = st.one_of(
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=1)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(LEAVES), value=WRONG_TYPES)
def test_wrong_type_names_the_key(key, value):
    # A list is the right type for a list-valued key (pose.gaps = [1] is valid): only wrong types count.
    assume(not isinstance(flatten(RAW)[key], type(value)))
    with pytest.raises(ParamsError) as e:
        params_from_dict(_set(RAW, key, value))
    _assert_one_line_naming(e.value, key)


@settings(max_examples=40, deadline=None)
@given(section=st.sampled_from(sorted(RAW)), name=st.from_regex(r"[a-z]{3,8}_x", fullmatch=True))
def test_unknown_key_names_it_and_lists_allowed(section, name):
    with pytest.raises(ParamsError) as e:
        params_from_dict(_set(RAW, f"{section}.{name}", 1))
    _assert_one_line_naming(e.value, f"{section}.{name}")
    assert "allowed keys" in str(e.value)


@pytest.mark.parametrize("key", LEAVES + sorted(RAW))
def test_missing_key_or_section_names_it(key):
    with pytest.raises(ParamsError) as e:
        params_from_dict(_delete(RAW, key))
    _assert_one_line_naming(e.value, key)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("loss.lambda", 1.5),
        ("loss.lambda", -0.1),
        ("loss.name", "l1"),
        ("train.device", "tpu"),
        ("train.epochs", 0),
        ("train.lr", 0.0),
        ("model.depth", 0),
        ("model.encoder", "resnet 50"),
        ("model.encoder", "hf-hub:timm/resnet50.a1_in1k"),
        ("model.pretrained", True),  # with encoder unet: the plain U-Net has no pretrained weights
        ("model.weights", "weights/resnet34.pth"),  # with pretrained false
        ("model.weights", ""),
        ("train.encoder_lr_mult", 0.0),
        ("train.encoder_lr_mult", 1.5),
        ("preprocess.height", 4),
        ("preprocess.width", 10000),
        ("preprocess.val_fraction", 1.0),
        ("eval.crop", "garg"),
        ("eval.gt", "sparse"),
        ("eval.max_depth", 0.0001),
        ("data.source", "kitti"),
        ("data.sha256", "abc"),
        ("data.synthetic.n_images", 1),
        ("mlflow.experiment", " "),
        ("mlflow.registered_model", "team/depth"),
        ("mlflow.registered_model", " depth"),
        ("mlflow.system_metrics_interval", 0.5),
        ("mlflow.val_images", -1),
        ("mlflow.val_images", 17),
        ("data.url", []),
        ("data.splits_url", ["http://ok.example/s.mat", " "]),
    ],
)
def test_out_of_range_values_name_key_and_allowed(key, value):
    with pytest.raises(ParamsError) as e:
        params_from_dict(_set(RAW, key, value))
    _assert_one_line_naming(e.value, key)
    assert "allowed" in str(e.value)


def test_bool_is_not_a_number_and_int_is_a_float():
    with pytest.raises(ParamsError):
        params_from_dict(_set(RAW, "train.epochs", True))
    assert params_from_dict(_set(RAW, "train.lr", 1)).train.lr == 1.0


def test_unknown_section_and_bad_files(tmp_path):
    with pytest.raises(ParamsError, match="unknown section 'trian'"):
        params_from_dict({**RAW, "trian": {}})
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_url_takes_one_location_or_a_list_of_mirrors():
    one = params_from_dict(_set(RAW, "data.url", "/data/nyu.mat")).data
    assert one.urls == ("/data/nyu.mat",)
    mirrors = params_from_dict(_set(RAW, "data.url", ["http://a.example/x.mat", "/data/nyu.mat"])).data
    assert mirrors.urls == ("http://a.example/x.mat", "/data/nyu.mat")
    with pytest.raises(ParamsError, match=r"'data.url' is \[1, 2\]; allowed: a string or a list of strings"):
        params_from_dict(_set(RAW, "data.url", [1, 2]))
