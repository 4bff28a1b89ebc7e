"""The downloader verifies checksums, fails clearly offline and never extracts outside its folder."""

import hashlib
import io
import os
import urllib.error
import zipfile

import pytest

from ondevice_rec.data import download


def make_zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def serving(content):
    def fetch(url, destination, expected_size, progress):
        with open(destination, "wb") as f:
            f.write(content)
    return fetch


def test_downloads_verifies_unpacks_and_caches(tmp_path, monkeypatch):
    content = make_zip({"ml-100k/u.data": "1\t2\t3\t4\n", "ml-100k/u.item": "2|A (1990)|||u|" + "|".join("0" * 19)})
    monkeypatch.setitem(download.ARCHIVES, "ml-100k",
                        download.Archive("ml-100k", len(content), hashlib.sha256(content).hexdigest()))
    folder = download.download("ml-100k", cache_dir=str(tmp_path), fetch=serving(content))
    assert folder == str(tmp_path / "ml-100k")
    assert open(os.path.join(folder, "u.data")).read() == "1\t2\t3\t4\n"

    def must_not_fetch(*args):
        raise AssertionError("a verified cache must not be downloaded again")
    assert download.download("ml-100k", cache_dir=str(tmp_path), fetch=must_not_fetch) == folder


def test_checksum_mismatch_is_refused_and_leaves_no_folder(tmp_path):
    with pytest.raises(download.DownloadError, match="checksum mismatch"):
        download.download("ml-1m", cache_dir=str(tmp_path), fetch=serving(make_zip({"ml-1m/x": "y"})))
    assert not os.path.exists(tmp_path / "ml-1m")


def test_offline_error_tells_the_user_to_pass_data_dir(tmp_path):
    def offline(url, destination, expected_size, progress):
        raise urllib.error.URLError("Temporary failure in name resolution")
    with pytest.raises(download.DownloadError, match="--data-dir"):
        download.download("ml-1m", cache_dir=str(tmp_path), fetch=offline)


def test_real_fetch_against_a_dead_address_fails_with_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "BASE_URL", "http://127.0.0.1:9/")  # nothing listens on the discard port
    with pytest.raises(download.DownloadError, match="pass its folder with --data-dir"):
        download.download("ml-1m", cache_dir=str(tmp_path))


def test_archive_members_escaping_the_target_are_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    evil.write_bytes(make_zip({"../../escaped.txt": "x"}))
    with pytest.raises(download.DownloadError, match="outside"):
        download.safe_extract(str(evil), str(tmp_path / "target"))
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_unknown_dataset_lists_the_choices(tmp_path):
    with pytest.raises(download.DownloadError, match="ml-100k, ml-1m, ml-25m, ml-latest-small"):
        download.download("ml-2m", cache_dir=str(tmp_path))
