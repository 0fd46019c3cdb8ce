"""Secret resolution from a mounted-Secret folder, and the short-lived cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import secrets
from shared.errors import SecretError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingReader:
    """A SecretReader whose values the test sets, recording each call."""

    def __init__(self, **values: str) -> None:
        self.values = values
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, namespace: str, name: str, key: str) -> str:
        self.calls.append((namespace, name, key))
        try:
            return self.values[f"{name}/{key}"]
        except KeyError:
            raise SecretError(f"no {name}/{key}") from None


def _write(root: Path, name: str, key: str, value: str) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / key).write_text(value)


class TestFolderReader:
    @pytest.mark.parametrize("stored", ["s3cret", "s3cret\n", "  s3cret \n\n"])
    def test_reads_dir_name_key_stripped(self, tmp_path: Path, stored: str) -> None:
        _write(tmp_path, "am-token", "token", stored)
        assert secrets.folder_reader(tmp_path)("ops", "am-token", "token") == "s3cret"

    @pytest.mark.parametrize("stored", ["", "\n", "  \t\n"])
    def test_an_empty_value_is_refused(self, tmp_path: Path, stored: str) -> None:
        """Compared as a token, "" would match an 'Authorization: Bearer' with nothing."""
        _write(tmp_path, "am-token", "token", stored)
        with pytest.raises(SecretError, match="is empty"):
            secrets.folder_reader(tmp_path)("ops", "am-token", "token")

    def test_keys_of_one_secret_are_separate_files(self, tmp_path: Path) -> None:
        _write(tmp_path, "slack", "url", "https://hooks.example/1")
        _write(tmp_path, "slack", "token", "xoxb")
        read = secrets.folder_reader(tmp_path)
        assert read("ops", "slack", "url") == "https://hooks.example/1"
        assert read("ops", "slack", "token") == "xoxb"

    @pytest.mark.parametrize(
        ("name", "key"), [("missing", "token"), ("am-token", "missing"), ("am-token", "TOKEN")]
    )
    def test_missing_secret_or_key(self, tmp_path: Path, name: str, key: str) -> None:
        _write(tmp_path, "am-token", "token", "s3cret")
        with pytest.raises(SecretError, match="not found") as caught:
            secrets.folder_reader(tmp_path)("ops", name, key)
        assert repr(name) in str(caught.value)
        assert repr(key) in str(caught.value)
        assert isinstance(caught.value.__cause__, FileNotFoundError)

    def test_missing_root(self, tmp_path: Path) -> None:
        with pytest.raises(SecretError, match="not found"):
            secrets.folder_reader(tmp_path / "nope")("ops", "am-token", "token")

    def test_unreadable_key(self, tmp_path: Path) -> None:
        (tmp_path / "am-token" / "token").mkdir(parents=True)
        with pytest.raises(SecretError, match="unreadable") as caught:
            secrets.folder_reader(tmp_path)("ops", "am-token", "token")
        assert isinstance(caught.value.__cause__, OSError)

    @pytest.mark.parametrize(
        ("name", "key"),
        [
            ("..", "outside"),
            ("../outside", "token"),
            ("am-token", "../../outside"),
            ("am-token/..", "outside"),
            (".", "outside"),
            ("am-token", ".."),
            ("am-token", "."),
            ("/etc", "passwd"),
            ("am-token", "/etc/passwd"),
        ],
    )
    def test_rejects_path_traversal(self, tmp_path: Path, name: str, key: str) -> None:
        root = tmp_path / "secrets"
        _write(root, "am-token", "token", "s3cret")
        (tmp_path / "outside").write_text("not yours")
        (root / "outside").write_text("not a secret")
        with pytest.raises(SecretError, match="plain file names"):
            secrets.folder_reader(root)("ops", name, key)


class TestCachedSecrets:
    def test_reuses_value_within_ttl(self) -> None:
        reader, clock = CountingReader(**{"am/token": "one"}), FakeClock()
        cache = secrets.CachedSecrets(reader, ttl=30.0, clock=clock)
        assert cache.get("ops", "am", "token") == "one"
        clock.advance(29.999)
        reader.values["am/token"] = "two"
        assert cache.get("ops", "am", "token") == "one"
        assert reader.calls == [("ops", "am", "token")]

    @pytest.mark.parametrize("elapsed", [30.0, 30.001, 3600.0])
    def test_reads_again_once_ttl_has_passed(self, elapsed: float) -> None:
        reader, clock = CountingReader(**{"am/token": "one"}), FakeClock()
        cache = secrets.CachedSecrets(reader, ttl=30.0, clock=clock)
        cache.get("ops", "am", "token")
        reader.values["am/token"] = "two"
        clock.advance(elapsed)
        assert cache.get("ops", "am", "token") == "two"
        assert len(reader.calls) == 2

    def test_new_value_starts_a_new_ttl(self) -> None:
        reader, clock = CountingReader(**{"am/token": "one"}), FakeClock()
        cache = secrets.CachedSecrets(reader, ttl=10.0, clock=clock)
        cache.get("ops", "am", "token")
        clock.advance(10.0)
        reader.values["am/token"] = "two"
        assert cache.get("ops", "am", "token") == "two"
        clock.advance(9.0)
        reader.values["am/token"] = "three"
        assert cache.get("ops", "am", "token") == "two"
        clock.advance(1.0)
        assert cache.get("ops", "am", "token") == "three"

    def test_default_ttl_is_used(self) -> None:
        reader, clock = CountingReader(**{"am/token": "one"}), FakeClock()
        cache = secrets.CachedSecrets(reader, clock=clock)
        cache.get("ops", "am", "token")
        clock.advance(secrets.CACHE_SECONDS - 0.001)
        cache.get("ops", "am", "token")
        assert len(reader.calls) == 1
        clock.advance(0.001)
        cache.get("ops", "am", "token")
        assert len(reader.calls) == 2

    def test_entries_are_per_namespace_name_and_key(self) -> None:
        reader = CountingReader(**{"am/token": "t", "am/other": "o", "slack/token": "s"})
        cache = secrets.CachedSecrets(reader, clock=FakeClock())
        for namespace, name, key in [
            ("ops", "am", "token"),
            ("dev", "am", "token"),
            ("ops", "am", "other"),
            ("ops", "slack", "token"),
        ]:
            cache.get(namespace, name, key)
            cache.get(namespace, name, key)
        assert len(reader.calls) == 4
        assert cache.get("ops", "am", "other") == "o"

    def test_failures_are_not_cached(self) -> None:
        reader, clock = CountingReader(), FakeClock()
        cache = secrets.CachedSecrets(reader, clock=clock)
        with pytest.raises(SecretError):
            cache.get("ops", "am", "token")
        reader.values["am/token"] = "created"
        assert cache.get("ops", "am", "token") == "created"

    def test_rotation_on_disk_is_seen_after_ttl(self, tmp_path: Path) -> None:
        _write(tmp_path, "am-token", "token", "old\n")
        clock = FakeClock()
        cache = secrets.CachedSecrets(secrets.folder_reader(tmp_path), ttl=30.0, clock=clock)
        assert cache.get("ops", "am-token", "token") == "old"
        _write(tmp_path, "am-token", "token", "new\n")
        clock.advance(15.0)
        assert cache.get("ops", "am-token", "token") == "old"
        clock.advance(15.0)
        assert cache.get("ops", "am-token", "token") == "new"

    def test_deleted_secret_fails_after_ttl(self, tmp_path: Path) -> None:
        _write(tmp_path, "am-token", "token", "old")
        clock = FakeClock()
        cache = secrets.CachedSecrets(secrets.folder_reader(tmp_path), ttl=30.0, clock=clock)
        cache.get("ops", "am-token", "token")
        (tmp_path / "am-token" / "token").unlink()
        assert cache.get("ops", "am-token", "token") == "old"
        clock.advance(30.0)
        with pytest.raises(SecretError, match="not found"):
            cache.get("ops", "am-token", "token")
