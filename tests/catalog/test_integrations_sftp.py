"""SFTP upload of an export to a real asyncssh SFTP server, with host key checking."""

from __future__ import annotations

from pathlib import Path

import pytest

from belltower.errors import ConfigurationError
from belltower.jobtypes import Database
from belltower.settings import Settings
from belltower_dev.standins.sftp import SftpStandIn
from belltower_integration.jobs import sftp_upload
from tests.catalog.integrations_support import run_job


@pytest.fixture
def remote_root(tmp_path: Path) -> Path:
    root = tmp_path / "sftp-root"
    root.mkdir()
    return root


@pytest.fixture
def batch_settings(tmp_batch_folder: Path) -> Settings:
    return Settings(batch_folder=tmp_batch_folder)


def params(server: SftpStandIn, **extra: object) -> dict:
    return {"host": "127.0.0.1", "port": server.port, "username": server.username,
            "pattern": "exports/*.csv", "remote_dir": "inbound", **extra}  # fmt: skip


async def test_uploads_by_password_renames_into_place_and_moves_the_export(
    remote_root: Path, tmp_batch_folder: Path, batch_settings: Settings, monkeypatch
) -> None:
    export = tmp_batch_folder / "exports" / "names.csv"
    export.parent.mkdir()
    export.write_bytes(b"First,Last\r\nAda,Lovelace\r\n")
    (tmp_batch_folder / "exports" / "notes.txt").write_text("not matched")
    async with SftpStandIn(remote_root) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_SFTP_KNOWN_HOSTS", server.known_hosts)
        monkeypatch.setenv("BELLTOWER_SECRET_SFTP_PASSWORD", server.password)
        db = Database("postgresql://unused")
        run = await run_job(sftp_upload.job_type, batch_settings, db,
                            params(server, password_secret="sftp-password"))  # fmt: skip
        again = await run_job(sftp_upload.job_type, batch_settings, db,
                              params(server, password_secret="sftp-password"))  # fmt: skip
    assert (remote_root / "inbound" / "names.csv").read_bytes() == b"First,Last\r\nAda,Lovelace\r\n"
    assert sorted(p.name for p in (remote_root / "inbound").iterdir()) == ["names.csv"]
    assert not export.exists() and (tmp_batch_folder / "exports" / "notes.txt").exists()
    [sent] = list((tmp_batch_folder / "sent").iterdir())
    assert sent.name.startswith("names_") and sent.read_text().startswith("First,Last")
    assert run.output.summary == "sent 1 files to 127.0.0.1"
    assert "SFTP upload: 1 processed, 0 skipped, 0 failed" in run.text
    assert again.output.summary == "no file matches exports/*.csv; nothing sent"


async def test_uploads_by_key_and_refuses_an_unknown_host_key(
    remote_root: Path, tmp_path: Path, tmp_batch_folder: Path, batch_settings: Settings, monkeypatch
) -> None:
    """Secrets as mounted files: the test writes the key and the known_hosts file the worker reads."""
    (tmp_batch_folder / "exports").mkdir()
    (tmp_batch_folder / "exports" / "messenger.csv").write_bytes(b"x\r\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    monkeypatch.setenv("BELLTOWER_SECRETS_DIR", str(secrets))
    monkeypatch.delenv("BELLTOWER_SECRET_SFTP_KNOWN_HOSTS", raising=False)
    db = Database("postgresql://unused")
    async with SftpStandIn(remote_root) as server, SftpStandIn(remote_root) as impostor:
        (secrets / "sftp-key").write_text(server.client_private_key)
        (secrets / "sftp-known-hosts").write_text(
            impostor.known_hosts.replace(str(impostor.port), str(server.port))
        )
        refused = await run_job(sftp_upload.job_type, batch_settings, db,
                                params(server, key_secret="sftp-key"), raises=ConfigurationError)  # fmt: skip
        assert "host key" in str(refused.error) and "not in the known hosts" in str(refused.error)
        assert not (remote_root / "inbound").exists()
        assert (tmp_batch_folder / "exports" / "messenger.csv").exists()
        (secrets / "sftp-known-hosts").write_text(server.known_hosts)
        await run_job(
            sftp_upload.job_type, batch_settings, db, params(server, key_secret="sftp-key")
        )
    assert (remote_root / "inbound" / "messenger.csv").read_bytes() == b"x\r\n"


async def test_a_missing_secret_names_the_variable_to_set(
    batch_settings: Settings, monkeypatch
) -> None:
    monkeypatch.delenv("BELLTOWER_SECRET_SFTP_KNOWN_HOSTS", raising=False)
    run = await run_job(sftp_upload.job_type, batch_settings, Database("postgresql://unused"),
                        {"host": "h", "username": "u", "pattern": "*.csv", "password_secret": "pw"},
                        raises=ConfigurationError)  # fmt: skip
    assert "BELLTOWER_SECRET_SFTP_KNOWN_HOSTS" in str(run.error)
