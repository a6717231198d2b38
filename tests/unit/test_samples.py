"""The shipped sample files are what the generators produce from the code."""

import pathlib

from oslo_config import generator as config_generator
from oslo_policy import generator as policy_generator

ETC = pathlib.Path(__file__).resolve().parents[2] / "etc"


def test_config_sample_is_up_to_date(tmp_path):
    # Compare our own options only: the library namespaces in the sample move
    # with oslo releases, ours move with our code.
    out = tmp_path / "ours.conf"
    config_generator.main(["--namespace", "backupsvc", "--wrap-width", "79",
                           "--output-file", str(out)])
    ours = out.read_text().split("# From backupsvc\n", 1)[1].strip()
    assert ours in (ETC / "backupsvc.conf.sample").read_text(), (
        "etc/backupsvc.conf.sample is stale: run "
        "oslo-config-generator --config-file etc/backupsvc-config-generator.conf")


def test_policy_sample_is_up_to_date(tmp_path):
    out = tmp_path / "policy.yaml.sample"
    policy_generator.generate_sample(
        args=["--config-file", str(ETC / "backupsvc-policy-generator.conf"),
              "--output-file", str(out)])
    assert out.read_text() == (ETC / "policy.yaml.sample").read_text(), (
        "etc/policy.yaml.sample is stale: run "
        "oslopolicy-sample-generator --config-file etc/backupsvc-policy-generator.conf")
