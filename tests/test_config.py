"""The configuration file: defaults, the example file, and precise errors."""

from dataclasses import replace
from pathlib import Path

import pytest

from teaclave.config import AttestationConfig, Config, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_file_equals_the_defaults() -> None:
    example = load_config(ROOT / "config" / "teaclave.toml")
    assert example.data_path == Config().data_path  # "~/…" is expanded as the file is read
    assert replace(example, data_dir=Config().data_dir) == Config()


def test_the_default_data_directory_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert Config().data_path == tmp_path / "home" / ".local" / "share" / "teaclave"


def test_relative_paths_in_a_file_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "etc"
    directory.mkdir()
    (directory / "teaclave.toml").write_text(
        'data_dir = "data"\n'
        '[execution]\nfile_roots = ["files", "/srv/data"]\nwork_dir = "../work"\n'
        '[attestation]\nenclave_info = "info.toml"\nauditors = ["a=keys/a.pem", "broken"]\n'
        'collateral_dir = "~/collateral"\n'
    )
    monkeypatch.chdir("/")
    config = load_config(directory / "teaclave.toml")
    assert config.data_path == directory / "data"
    assert config.execution.file_roots == (str(directory / "files"), "/srv/data")
    assert config.execution.work_dir == str(directory / "../work")
    assert config.execution.fusion_dir == ""
    assert config.attestation.enclave_info == str(directory / "info.toml")
    assert config.attestation.auditors == (f"a={directory / 'keys/a.pem'}", "broken")
    assert config.attestation.collateral_dir == str(Path.home() / "collateral")


def test_a_data_directory_given_on_the_command_line_is_below_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Config().with_data_dir("here").data_dir == str(tmp_path / "here")


def test_values_override_defaults() -> None:
    config = parse_config(
        '[execution]\nfile_roots = ["/srv/data"]\n[scheduler]\nexecutor_timeout_secs = 2\n'
    )
    assert config.execution.file_roots == ("/srv/data",)
    assert config.scheduler.executor_timeout_secs == 2.0
    assert config.endpoints == Config().endpoints
    assert parse_config("[storage]\nmax_watch_streams = 8").storage.max_watch_streams == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense = 1", "unknown setting nonsense"),
        ("[auth]\ntoken_lifetime_secs = -1", "auth.token_lifetime_secs must be a positive"),
        ("[auth]\ndev_teaclave_admin = 1", "auth.dev_teaclave_admin must be true or false"),
        ("[execution]\nfile_roots = '/x'", "execution.file_roots must be a list"),
        ("auth = 3", r"\[auth\] must be a table"),
        ("[attestation]\nprovider = 'sgx'", "attestation.provider must be one of simulation, "),
        ("[attestation]\nmode = 'prod'", "attestation.mode must be one of development, production"),
        ("[attestation]\nenclave_info = 'e.json'", "enclave_info needs attestation.auditors"),
        ("[attestation]\nmode = 'production'", "production refuses simulated evidence"),
        (
            "[attestation]\nmode = 'production'\nprovider = 'nitro'\nallow_simulation = false",
            "production needs attestation.enclave_info",
        ),
        ("x = [", "invalid TOML"),
        (
            "[execution]\nmemory_mb = 9000",
            "execution.memory_mb must not exceed execution.max_memory_mb",
        ),
        (
            "[execution]\nmax_cpu_secs = 5.0",
            "execution.cpu_secs must not exceed execution.max_cpu_secs",
        ),
        ("[execution]\nmax_log_bytes = 1048577", "execution.max_log_bytes must not exceed 1048576"),
        ("[execution]\nmax_log_lines = 0", "execution.max_log_lines must be a positive integer"),
        ("[storage]\nmax_watch_streams = 9", "storage.max_watch_streams must not exceed 8"),
        ("[storage]\nmax_watch_streams = 0", "storage.max_watch_streams must be a positive"),
    ],
)
def test_bad_settings_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_admin_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEACLAVE_ADMIN_PASSWORD", "s3cret")
    assert Config().admin_password() == "s3cret"
    assert parse_config('[auth]\nadmin_password = "file"').admin_password() == "file"


PRODUCTION = (
    "[attestation]\nmode = 'production'\nprovider = 'nitro'\nallow_simulation = false\n"
    "enclave_info = 'e.json'\nauditors = ['alice=alice.pem']\n"
)


def test_production_refuses_the_development_admin() -> None:
    assert parse_config(PRODUCTION).attestation.mode == "production"
    assert parse_config(PRODUCTION + "[auth]\ndev_teaclave_admin = false\n").auth == Config().auth
    with pytest.raises(ConfigError) as info:
        parse_config(PRODUCTION + "[auth]\ndev_teaclave_admin = true\n")
    assert "attestation.mode" in str(info.value)
    assert "auth.dev_teaclave_admin" in str(info.value)
    development = parse_config("[auth]\ndev_teaclave_admin = true\n")
    assert development.auth.dev_teaclave_admin


def test_evidence_is_fresh_for_a_day_by_default() -> None:
    assert Config().attestation.max_evidence_age_secs == 86400.0
    configured = parse_config("[attestation]\nmax_evidence_age_secs = 600").attestation
    assert configured == AttestationConfig(max_evidence_age_secs=600.0)
