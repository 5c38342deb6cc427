"""The page's vendored libraries (frontend/static/vendor/, written by scripts/update-vendor):
what the page loads is exactly the committed files, served by the app; vendor.json's checksums
and versions agree with the files, with each library's own banner and with package-lock.json;
every library comes with its licence. No Node.js: running and testing need none."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "frontend" / "static"
VENDOR = STATIC / "vendor"
MANIFEST: dict[str, Any] = json.loads((VENDOR / "vendor.json").read_text())
NPM_LOCK: dict[str, Any] = json.loads((ROOT / "frontend" / "package-lock.json").read_text())
NPM_PACKAGE: dict[str, Any] = json.loads((ROOT / "frontend" / "package.json").read_text())

# The banner each browser build opens with, naming its release.
BANNERS = {
    "markdown-it.esm.min.js": r"^/\*! markdown-it (\S+) ",
    "purify.es.js": r"^/\*! @license DOMPurify (\S+) ",
}
IMPORT = re.compile(r'^import\s[^;]*?from\s+"([^"]+)";', re.M)


def served(client: Client, url: str) -> tuple[bytes, str]:
    response = client.get(url)
    assert response.status_code == 200, url
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body, response["Content-Type"]


def page_modules(client: Client, page: str) -> dict[str, bytes]:
    """Every module the page loads, by URL: its <script type="module"> and, from there, each
    relative import, as a browser resolves them, fetched from the app."""
    html = client.get(page).content.decode()
    pending = re.findall(r'<script type="module" src="([^"]+)"></script>', html)
    assert pending, f"{page} loads no module"
    seen: dict[str, bytes] = {}
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        body, content_type = served(client, url)
        assert content_type.startswith("text/javascript"), (url, content_type)
        seen[url] = body
        for target in IMPORT.findall(body.decode()):
            assert target.startswith("."), f"{url} imports {target} from outside the app"
            pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(url), target)))
    return seen


@pytest.mark.django_db
def test_the_room_page_loads_exactly_the_committed_vendor_files(client: Client) -> None:
    modules = page_modules(client, "/rooms/lobby/")
    vendor_urls = {url for url in modules if url.startswith("/static/vendor/")}
    assert vendor_urls == {"/static/vendor/markdown-it.esm.min.js", "/static/vendor/purify.es.js"}
    for url in vendor_urls:
        assert modules[url] == (VENDOR / url.removeprefix("/static/vendor/")).read_bytes()


@pytest.mark.django_db
def test_the_licences_are_served_beside_the_libraries(client: Client) -> None:
    for name, entry in MANIFEST["files"].items():
        if name.endswith(".LICENSE.txt"):
            body, _ = served(client, f"/static/vendor/{name}")
            assert hashlib.sha256(body).hexdigest() == entry["sha256"]


def test_vendor_json_lists_every_file_with_its_checksum() -> None:
    on_disk = {path.name for path in VENDOR.iterdir()} - {"vendor.json"}
    assert set(MANIFEST["files"]) == on_disk
    for name, entry in MANIFEST["files"].items():
        digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
        assert digest == entry["sha256"], f"{name} changed by hand: run scripts/update-vendor"
        assert entry["package"] in MANIFEST["packages"]


@pytest.mark.parametrize("package", sorted(MANIFEST["packages"]))
def test_each_recorded_version_is_the_locked_one(package: str) -> None:
    version = MANIFEST["packages"][package]["version"]
    assert NPM_LOCK["packages"][f"node_modules/{package}"]["version"] == version
    # Every package, bundled ones too, comes with its licence.
    assert f"{package}.LICENSE.txt" in MANIFEST["files"]


@pytest.mark.parametrize("name", sorted(BANNERS))
def test_each_library_says_the_recorded_version_itself(name: str) -> None:
    package = MANIFEST["files"][name]["package"]
    match = re.match(BANNERS[name], (VENDOR / name).read_text())
    assert match, f"{name} does not open with its banner"
    assert match.group(1) == MANIFEST["packages"][package]["version"]


@pytest.mark.parametrize("package", sorted(NPM_PACKAGE["dependencies"]))
def test_the_vendored_release_is_within_package_json_range(package: str) -> None:
    wanted = NPM_PACKAGE["dependencies"][package]
    assert wanted.startswith("^"), "scripts/update-vendor --latest assumes caret ranges"
    floor = tuple(int(part) for part in wanted[1:].split("."))
    have = tuple(int(part) for part in MANIFEST["packages"][package]["version"].split("."))
    assert have[0] == floor[0] and have >= floor
    assert "bundled_in" not in MANIFEST["packages"][package]
