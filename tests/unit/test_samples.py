"""The shipped sample files are what the generators produce from the code.

The generators run in a subprocess: they register command-line options on
oslo.config's global object, which the rest of the test session already uses.
"""

import pathlib
import subprocess
import sys

ETC = pathlib.Path(__file__).resolve().parents[2] / "etc"


def _run(code: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", code, *args], check=True,
                   capture_output=True, text=True)


def test_config_sample_is_up_to_date(tmp_path):
    # Compare our own options only: the library namespaces in the sample move
    # with oslo releases, ours move with our code.
    out = tmp_path / "ours.conf"
    _run("import sys; from oslo_config import generator; generator.main(sys.argv[1:])",
         "--namespace", "backupsvc", "--wrap-width", "79", "--output-file", str(out))
    # Our options of each section ([DEFAULT], [service_user]...): in the sample,
    # the libraries' sections come between them.
    sample = (ETC / "backupsvc.conf.sample").read_text()
    sections = out.read_text().split("\n[")
    assert len(sections) >= 2
    for section in sections:
        ours = section.split("# From backupsvc\n", 1)[1].strip()
        assert ours in sample, (
            "etc/backupsvc.conf.sample is stale: run "
            "oslo-config-generator --config-file etc/backupsvc-config-generator.conf")


def test_policy_sample_is_up_to_date(tmp_path):
    out = tmp_path / "policy.yaml.sample"
    _run("import sys; from oslo_policy import generator; "
         "generator.generate_sample(args=sys.argv[1:])",
         "--namespace", "backupsvc", "--output-file", str(out))
    assert out.read_text() == (ETC / "policy.yaml.sample").read_text(), (
        "etc/policy.yaml.sample is stale: run "
        "oslopolicy-sample-generator --config-file etc/backupsvc-policy-generator.conf")
