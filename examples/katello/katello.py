"""A simulated Katello content server, for `organization.flow`.

Bound in a flow with `use examples.katello.katello as katello`. It models what
setting up an organization touches: the organization (with its `Library`
environment), products, a GPG key, repositories and their syncs, a
subscription manifest, lifecycle environments, content views with published
and promoted versions, and activation keys. Calls wait 50-150 ms like a
network round trip. A repository sync is a task on the server that takes a few
seconds: `sync_repository` is a polling action, which starts the task and is
then polled on a timer (holding no worker in between) until the task is done.
State lives in one JSON file:

    $WEFT_KATELLO_STATE          default ./.weft-katello/state.json; changed under an
                                 fcntl lock and replaced atomically
    $WEFT_KATELLO_LATENCY        scale the latency and the sync time; 0 turns them off
    $WEFT_KATELLO_SYNC_SECONDS   how long one repository sync takes (default 3)

Creating is idempotent: creating what already exists (same organization
label, same product name in the organization, ...) returns the existing one,
so a step interrupted by a crash can simply run again. Publishing is not: every
publish makes a new content view version.

Making a call fail, to watch a run pause, skip or roll back:

    echo sync_repository > .weft-katello/fail          # the next sync fails, once
    echo sync_repository:Tools > .weft-katello/fail    # the next sync of the Tools repository
    echo sync_repository.poll > .weft-katello/fail     # the next look at a sync task
    echo create_repository:AppStream > .weft-katello/fail
    WEFT_KATELLO_FAIL=upload_manifest weft run ...     # fails while it is set

An entry is `action` or `action:value` (calls with an argument equal to
`value`); each line of the `fail` file fails one call and is then removed.
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any, TypedDict

from examples.simstate import Service
from weft import ActionFailed, Context, Pending, action

SERVICE = Service("WEFT_KATELLO", ".weft-katello")
LIBRARY = "Library"
CONTENT_TYPES = ("yum", "file", "docker", "ansible_collection")
_PGP_HEADER = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_SINGULAR = {
    "organizations": "organization",
    "products": "product",
    "gpg_keys": "GPG key",
    "repositories": "repository",
    "environments": "lifecycle environment",
    "content_views": "content view",
    "versions": "content view version",
    "activation_keys": "activation key",
    "tasks": "task",
}


class Organization(TypedDict):
    id: int
    name: str
    label: str
    library_id: int


class Product(TypedDict):
    id: int
    name: str


class GpgKey(TypedDict):
    id: int
    name: str


class Manifest(TypedDict):
    uuid: str
    allocation: str


class Subscriptions(TypedDict):
    count: int


class Environment(TypedDict):
    id: int
    name: str
    prior: str


class Repository(TypedDict):
    id: int
    name: str
    product_id: int


class SyncResult(TypedDict):
    repository_id: int
    packages: int
    errata: int


class ContentView(TypedDict):
    id: int
    name: str


class ContentViewVersion(TypedDict):
    id: int
    version: str
    content_view_id: int


class Promotion(TypedDict):
    version_id: int
    environment_id: int
    environment: str


class ActivationKey(TypedDict):
    id: int
    name: str


# -- organizations -----------------------------------------------------------------------


@action(idempotent=True)
def delete_organization(label: str) -> None:
    """Delete the organization `label` and everything in it; a missing one is fine."""
    with SERVICE.transaction("delete_organization", {"label": label}) as state:
        found = _find(state, "organizations", label=label)
        if found is None:
            return
        org_id = found["id"]
        products = {p["id"] for p in _rows(state, "products") if p["organization_id"] == org_id}
        views = {v["id"] for v in _rows(state, "content_views") if v["organization_id"] == org_id}
        repositories = {r["id"] for r in _rows(state, "repositories") if r["product_id"] in products}
        _drop(state, "tasks", lambda t: t["repository_id"] in repositories)
        _drop(state, "repositories", lambda r: r["product_id"] in products)
        _drop(state, "versions", lambda v: v["content_view_id"] in views)
        for table in ("products", "content_views", "environments", "gpg_keys", "activation_keys", "manifests"):
            _drop(state, table, lambda row: row["organization_id"] == org_id)
        _drop(state, "organizations", lambda o: o["id"] == org_id)


@action(idempotent=True, undo=delete_organization)
def create_organization(name: str, label: str, ctx: Context) -> Organization:
    """Create an organization and its `Library` lifecycle environment."""
    _check_label(label)
    with SERVICE.transaction("create_organization", {"name": name, "label": label}) as state:
        org = _find(state, "organizations", label=label)
        if org is None:
            org = _insert(state, "organizations", name=name, label=label)
            _insert(state, "environments", organization_id=org["id"], name=LIBRARY, prior="")
            ctx.log(f"created organization {name} ({label})")
        library = _find(state, "environments", organization_id=org["id"], name=LIBRARY)
    return {"id": org["id"], "name": org["name"], "label": label, "library_id": library["id"]}


# -- products, GPG keys, repositories ----------------------------------------------------


@action(idempotent=True)
def create_product(organization_id: int, name: str) -> Product:
    """Create a product (a group of repositories) in an organization."""
    with SERVICE.transaction("create_product", {"organization_id": organization_id, "name": name}) as state:
        _get(state, "organizations", organization_id)
        product = _find(state, "products", organization_id=organization_id, name=name)
        if product is None:
            product = _insert(state, "products", organization_id=organization_id, name=name)
    return {"id": product["id"], "name": name}


@action(idempotent=True)
def create_gpg_key(organization_id: int, name: str, content: str) -> GpgKey:
    """Store an ASCII-armoured GPG public key that repositories check packages against."""
    if not content.strip().startswith(_PGP_HEADER):
        raise ActionFailed(f"GPG key {name!r} is not an ASCII-armoured public key (it must start with {_PGP_HEADER})")
    with SERVICE.transaction("create_gpg_key", {"organization_id": organization_id, "name": name}) as state:
        _get(state, "organizations", organization_id)
        key = _find(state, "gpg_keys", organization_id=organization_id, name=name)
        if key is None:
            key = _insert(state, "gpg_keys", organization_id=organization_id, name=name, content=content)
    return {"id": key["id"], "name": name}


@action(idempotent=True)
def create_repository(product_id: int, name: str, url: str, content_type: str, gpg_key_id: int) -> Repository:
    """Create a repository in a product, mirroring `url`."""
    if content_type not in CONTENT_TYPES:
        raise ActionFailed(f"unknown content type {content_type!r} (one of {', '.join(CONTENT_TYPES)})")
    if not url.startswith(("http://", "https://")):
        raise ActionFailed(f"repository {name!r}: upstream URL {url!r} is not http(s)")
    args = {"product_id": product_id, "name": name, "url": url}
    with SERVICE.transaction("create_repository", args) as state:
        _get(state, "products", product_id)
        _get(state, "gpg_keys", gpg_key_id)
        repo = _find(state, "repositories", product_id=product_id, name=name)
        if repo is None:
            repo = _insert(
                state,
                "repositories",
                product_id=product_id,
                name=name,
                url=url,
                content_type=content_type,
                gpg_key_id=gpg_key_id,
                packages=None,
                errata=None,
            )
    return {"id": repo["id"], "name": name, "product_id": product_id}


@action(idempotent=True, poll_every=0.5, poll_max=5.0, poll_factor=1.5)
class sync_repository:
    """Mirror a repository from its upstream URL: a task on the server, polled until it is done."""

    def start(self, repository_id: int, ctx: Context) -> Any:
        """Ask the server to sync; it starts a task and answers with the task's id at once."""
        repo = dict(_get(SERVICE.read(), "repositories", repository_id))
        # The name and URL are arguments for the fail switch too: `sync_repository:Tools`.
        args = {"repository_id": repository_id, "name": repo["name"], "url": repo["url"]}
        with SERVICE.transaction("sync_repository", args) as state:
            _get(state, "repositories", repository_id)
            task = _insert(
                state,
                "tasks",
                action="sync",
                repository_id=repository_id,
                status="running",
                started=time.time(),
                seconds=_sync_seconds(),
            )
        ctx.log(f"syncing {repo['name']} from {repo['url']} (task {task['id']})")
        return {"task_id": task["id"], "repository": repo["name"]}

    def poll(self, handle: Any, ctx: Context) -> SyncResult | Pending:
        """Look at the task: how far it got, or, once it is done, what it synced."""
        with SERVICE.transaction("sync_repository.poll", {"task_id": handle["task_id"]}) as state:
            task = _get(state, "tasks", handle["task_id"])
            elapsed = time.time() - task["started"]
            if elapsed < task["seconds"]:
                return Pending(progress=elapsed / task["seconds"])
            row = _get(state, "repositories", task["repository_id"])
            if task["status"] == "running":  # the task ends: its content lands in the repository
                # The same upstream always has the same content, so a re-sync finds the same packages.
                seed = zlib.crc32(row["url"].encode())
                row["packages"], row["errata"] = 200 + seed % 1800, 5 + seed % 120
                task["status"] = "finished"
        ctx.progress(1.0)
        ctx.log(f"synced {row['name']}: {row['packages']} packages, {row['errata']} errata")
        return {"repository_id": row["id"], "packages": row["packages"], "errata": row["errata"]}


def _sync_seconds() -> float:
    try:
        seconds = float(os.environ.get("WEFT_KATELLO_SYNC_SECONDS", "3"))
        scale = float(os.environ.get("WEFT_KATELLO_LATENCY", "1"))
    except ValueError:
        return 3.0
    return max(0.0, seconds * scale)


# -- subscriptions -----------------------------------------------------------------------


@action(idempotent=True)
def upload_manifest(organization_id: int, allocation: str) -> Manifest:
    """Fetch the subscription manifest of a portal allocation and upload it to the organization."""
    if not allocation.strip():
        raise ActionFailed("no subscription allocation given: pass allocation=<name> with upload_manifest=true")
    with SERVICE.transaction(
        "upload_manifest", {"organization_id": organization_id, "allocation": allocation}
    ) as state:
        _get(state, "organizations", organization_id)
        manifest = _find(state, "manifests", organization_id=organization_id)
        if manifest is None or manifest["allocation"] != allocation:
            _drop(state, "manifests", lambda m: m["organization_id"] == organization_id)
            uuid = f"{zlib.crc32(f'{organization_id}/{allocation}'.encode()):08x}-manifest"
            manifest = _insert(state, "manifests", organization_id=organization_id, allocation=allocation, uuid=uuid)
    return {"uuid": manifest["uuid"], "allocation": allocation}


@action(idempotent=True)
def import_subscriptions(organization_id: int, ctx: Context) -> Subscriptions:
    """Import the subscriptions of the organization's uploaded manifest."""
    with SERVICE.transaction("import_subscriptions", {"organization_id": organization_id}) as state:
        manifest = _find(state, "manifests", organization_id=organization_id)
        if manifest is None:
            raise ActionFailed(f"organization {organization_id} has no manifest: upload one first")
        count = 4 + zlib.crc32(manifest["allocation"].encode()) % 20
        manifest["subscriptions"] = count
    for part in range(1, 5):
        SERVICE.latency()
        ctx.progress(part / 4)
    ctx.log(f"imported {count} subscriptions from allocation {manifest['allocation']}")
    return {"count": count}


# -- lifecycle environments, content views ------------------------------------------------


@action(idempotent=True)
def create_lifecycle_environment(organization_id: int, name: str, prior: str) -> Environment:
    """Add environment `name` to the promotion path, after the existing environment `prior`."""
    args = {"organization_id": organization_id, "name": name, "prior": prior}
    with SERVICE.transaction("create_lifecycle_environment", args) as state:
        _get(state, "organizations", organization_id)
        env = _find(state, "environments", organization_id=organization_id, name=name)
        if env is None:
            if _find(state, "environments", organization_id=organization_id, name=prior) is None:
                raise ActionFailed(
                    f"cannot add environment {name!r} after {prior!r}: there is no environment {prior!r}"
                )
            successor = _find(state, "environments", organization_id=organization_id, prior=prior)
            if successor is not None:
                raise ActionFailed(f"environment {prior!r} already has a successor, {successor['name']!r}")
            env = _insert(state, "environments", organization_id=organization_id, name=name, prior=prior)
        elif env["prior"] != prior:
            raise ActionFailed(f"environment {name!r} exists after {env['prior']!r}, not after {prior!r}")
    return {"id": env["id"], "name": name, "prior": prior}


@action(idempotent=True)
def delete_content_view(organization_id: int, name: str) -> None:
    """Delete a content view and all its versions; a missing one is fine."""
    with SERVICE.transaction("delete_content_view", {"organization_id": organization_id, "name": name}) as state:
        view = _find(state, "content_views", organization_id=organization_id, name=name)
        if view is not None:
            _drop(state, "versions", lambda v: v["content_view_id"] == view["id"])
            _drop(state, "content_views", lambda v: v["id"] == view["id"])


@action(idempotent=True, undo=delete_content_view)
def create_content_view(organization_id: int, name: str, repository_ids: list[int]) -> ContentView:
    """Create a content view over the given repositories."""
    args = {"organization_id": organization_id, "name": name}
    with SERVICE.transaction("create_content_view", args) as state:
        _get(state, "organizations", organization_id)
        for repo_id in repository_ids:
            _get(state, "repositories", repo_id)
        view = _find(state, "content_views", organization_id=organization_id, name=name)
        if view is None:
            view = _insert(
                state, "content_views", organization_id=organization_id, name=name, repository_ids=repository_ids
            )
        else:
            view["repository_ids"] = repository_ids
    return {"id": view["id"], "name": name}


@action
def publish_content_view(content_view_id: int, description: str, ctx: Context) -> ContentViewVersion:
    """Publish a new version of a content view from its repositories' synced content (into Library)."""
    with SERVICE.transaction("publish_content_view", {"content_view_id": content_view_id}) as state:
        view = dict(_get(state, "content_views", content_view_id))
        repos = [dict(_get(state, "repositories", r)) for r in view["repository_ids"]]
    empty = [r["name"] for r in repos if r["packages"] is None]
    if empty:
        ctx.log(f"publishing {view['name']} with never-synced repositories left empty: {', '.join(empty)}")
    for i, _ in enumerate(repos):
        SERVICE.latency(scale=4)
        ctx.progress((i + 1) / (len(repos) + 1))
    with SERVICE.transaction("publish_content_view.finish", {"content_view_id": content_view_id}) as state:
        number = 1 + sum(1 for v in _rows(state, "versions") if v["content_view_id"] == content_view_id)
        library = _find(state, "environments", organization_id=view["organization_id"], name=LIBRARY)
        version = _insert(
            state,
            "versions",
            content_view_id=content_view_id,
            version=f"{number}.0",
            description=description,
            packages=sum(r["packages"] or 0 for r in repos),
            environment_ids=[library["id"]],
        )
    ctx.progress(1.0)
    ctx.log(f"published {view['name']} version {version['version']} ({version['packages']} packages)")
    return {"id": version["id"], "version": version["version"], "content_view_id": content_view_id}


@action(idempotent=True)
def promote_content_view_version(version_id: int, environment_id: int, ctx: Context) -> Promotion:
    """Promote a content view version to an environment; it must already be in the prior one."""
    args = {"version_id": version_id, "environment_id": environment_id}
    with SERVICE.transaction("promote_content_view_version", args) as state:
        version = _get(state, "versions", version_id)
        env = _get(state, "environments", environment_id)
        prior = _find(state, "environments", organization_id=env["organization_id"], name=env["prior"])
        if environment_id not in version["environment_ids"]:
            if prior is None or prior["id"] not in version["environment_ids"]:
                raise ActionFailed(
                    f"version {version['version']} is not in {env['prior'] or 'the prior environment'}: "
                    f"promote it there before {env['name']}"
                )
            version["environment_ids"].append(environment_id)
    ctx.log(f"version {version['version']} promoted to {env['name']}")
    return {"version_id": version_id, "environment_id": environment_id, "environment": env["name"]}


# -- activation keys -----------------------------------------------------------------------


@action(idempotent=True)
def delete_activation_key(organization_id: int, name: str) -> None:
    """Delete an activation key; a missing one is fine."""
    with SERVICE.transaction("delete_activation_key", {"organization_id": organization_id, "name": name}) as state:
        _drop(state, "activation_keys", lambda k: k["organization_id"] == organization_id and k["name"] == name)


@action(idempotent=True, undo=delete_activation_key)
def create_activation_key(
    organization_id: int, name: str, environment_id: int, content_view_id: int, auto_attach: bool
) -> ActivationKey:
    """Create a key that registers hosts to a content view in an environment."""
    args = {"organization_id": organization_id, "name": name}
    with SERVICE.transaction("create_activation_key", args) as state:
        env = _get(state, "environments", environment_id)
        view = _get(state, "content_views", content_view_id)
        promoted = any(
            v["content_view_id"] == content_view_id and environment_id in v["environment_ids"]
            for v in _rows(state, "versions")
        )
        if not promoted:
            raise ActionFailed(
                f"content view {view['name']} has no version in {env['name']}: publish and promote it first"
            )
        key = _find(state, "activation_keys", organization_id=organization_id, name=name)
        if key is None:
            key = _insert(
                state,
                "activation_keys",
                organization_id=organization_id,
                name=name,
                environment_id=environment_id,
                content_view_id=content_view_id,
                auto_attach=auto_attach,
            )
    return {"id": key["id"], "name": name}


# -- the tables -----------------------------------------------------------------------------


def _rows(state: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return list(state.setdefault(table, {}).values())


def _find(state: dict[str, Any], table: str, **match: Any) -> dict[str, Any] | None:
    return next((r for r in _rows(state, table) if all(r.get(k) == v for k, v in match.items())), None)


def _get(state: dict[str, Any], table: str, row_id: int) -> dict[str, Any]:
    row = state.setdefault(table, {}).get(str(row_id))
    if row is None:
        raise ActionFailed(f"there is no {_SINGULAR.get(table, table)} with id {row_id}")
    return row


def _insert(state: dict[str, Any], table: str, **fields: Any) -> dict[str, Any]:
    row_id = state.get("next_id", 1)
    state["next_id"] = row_id + 1
    row = {"id": row_id, **fields}
    state.setdefault(table, {})[str(row_id)] = row
    return row


def _drop(state: dict[str, Any], table: str, doomed: Any) -> None:
    rows = state.setdefault(table, {})
    for key in [k for k, r in rows.items() if doomed(r)]:
        del rows[key]


def _check_label(label: str) -> None:
    if not label or not all(c.isalnum() or c in "_-" for c in label):
        raise ActionFailed(f"invalid organization label {label!r}: use letters, digits, '-' and '_'")
