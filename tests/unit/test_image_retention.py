"""Image retention (the images role's converge): the current and the previous build of each
image stay, and so does any build a container still uses; every other tag of gpuhub's
images goes, and nothing of other repositories. Docker's lists as its API gives them."""

from __future__ import annotations

from shared_facts import filters

HUB = "gpuhub/hub"
CPU = "gpuhub/singleuser-cpu"
REGISTRY_HUB = "hub.cluster:5000/gpuhub/hub"


def image(number: int, *tags: str) -> dict[str, object]:
    return {"Id": f"sha256:{number:064x}", "RepoTags": list(tags)}


def stale(images: list[dict[str, object]], containers: tuple[int, ...] = ()) -> list[str]:
    used = [{"ImageID": f"sha256:{n:064x}"} for n in containers]
    return filters().gpuhub_stale_image_tags(images, [HUB, CPU, REGISTRY_HUB], used)


def test_current_and_previous_stay_older_builds_go() -> None:
    images = [
        image(3, f"{HUB}:c3", f"{HUB}:current", f"{REGISTRY_HUB}:c3"),
        image(2, f"{HUB}:b2", f"{HUB}:previous", f"{REGISTRY_HUB}:b2"),
        image(1, f"{HUB}:a1", f"{REGISTRY_HUB}:a1"),
        image(4, f"{CPU}:d4", f"{CPU}:current"),
    ]
    assert stale(images) == [f"{HUB}:a1", f"{REGISTRY_HUB}:a1"]


def test_a_build_a_container_uses_stays() -> None:
    images = [image(3, f"{HUB}:current"), image(1, f"{CPU}:a1"), image(5, f"{CPU}:e5")]
    assert stale(images, containers=(1,)) == [f"{CPU}:e5"]


def test_other_repositories_and_untagged_images_are_not_gpuhubs() -> None:
    images = [
        image(1, "gpuhub/hub-extra:a1", "registry:2", "library/hub:a1"),
        image(2),
        {"Id": "sha256:" + "6" * 64, "RepoTags": None},
    ]
    assert stale(images) == []


def test_previous_is_a_tag_like_current() -> None:
    assert filters().gpuhub_image(HUB, "previous") == f"{HUB}:previous"
    assert filters().gpuhub_image(HUB) == f"{HUB}:current"
