"""The service's retrieval index follows the catalog like the model follows the registry: a new version
swaps in, a broken one never replaces the one serving, and an emptied catalog serves nothing."""

from __future__ import annotations

from typing import Any

from deskpilot.errors import ArtifactError
from deskpilot.service.copilot import IndexHolder


class FakeCatalog:
    def __init__(self) -> None:
        self.current: int | None = None
        self.broken: set[int] = set()
        self.pointer_error: Exception | None = None
        self.loads: list[int] = []

    def current_version(self) -> int | None:
        if self.pointer_error is not None:
            raise self.pointer_error
        return self.current

    def load(self, version: int | None = None) -> Any:
        assert version is not None
        self.loads.append(version)
        if version in self.broken:
            raise ArtifactError(f"index version {version} is corrupt")
        return f"index-{version}"


def test_a_new_version_swaps_in_and_an_unchanged_one_is_not_reloaded() -> None:
    catalog, loaded = FakeCatalog(), []
    holder = IndexHolder(catalog, on_loaded=loaded.append)
    holder.refresh()
    assert holder.loaded is None
    catalog.current = 1
    holder.refresh()
    holder.refresh()
    assert holder.loaded is not None
    assert (holder.loaded.version, holder.loaded.index) == (1, "index-1")
    assert (catalog.loads, loaded) == ([1], [1])


def test_a_version_that_fails_to_load_never_replaces_the_one_serving_and_is_not_retried() -> None:
    catalog, failed = FakeCatalog(), []
    holder = IndexHolder(catalog, on_failed=lambda version, error: failed.append(version))
    catalog.current = 1
    holder.refresh()
    catalog.current, catalog.broken = 2, {2}
    holder.refresh()
    holder.refresh()
    assert holder.loaded is not None
    assert holder.loaded.version == 1
    assert failed == [2]
    assert catalog.loads == [1, 2]
    catalog.current = 3  # a fixed version follows
    holder.refresh()
    assert holder.loaded.version == 3


def test_an_unreadable_pointer_or_an_unexpected_error_keeps_the_server_up() -> None:
    catalog = FakeCatalog()
    holder = IndexHolder(catalog)
    catalog.pointer_error = OSError("permission denied")
    holder.refresh()  # logged, not raised
    catalog.pointer_error = None
    catalog.current = 1
    catalog.load = lambda version=None: (_ for _ in ()).throw(RuntimeError("faiss: bad magic"))  # type: ignore[method-assign]
    holder.refresh()
    assert holder.loaded is None


def test_an_emptied_catalog_unloads_the_index_so_erased_items_are_not_served() -> None:
    catalog, unloaded = FakeCatalog(), []
    holder = IndexHolder(catalog, on_unloaded=lambda: unloaded.append(True))
    catalog.current = 1
    holder.refresh()
    catalog.current = None  # every version deleted after the last items were erased
    holder.refresh()
    assert holder.loaded is None
    assert unloaded == [True]  # the version gauge goes back to 0
