"""The real jupyterhub_config.py, loaded by the real JupyterHub, configures the real
NativeAuthenticator and the gpuhub DockerSpawner as the settings say."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from engine import Holders
from gpuhub_hub import hardening
from gpuhub_hub.accounts import GpuhubAuthenticator
from gpuhub_hub.gpus import Allocation, GpuPolicy
from gpuhub_hub.settings import SettingsError
from gpuhub_hub.spawner import GpuhubSpawner
from hubsettings import CONFIG_PY, SettingsFactory
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from jupyterhub.auth import DummyAuthenticator
from jupyterhub.objects import Hub
from jupyterhub.user import User
from nativeauthenticator import NativeAuthenticator
from tornado import web


def load_hub(monkeypatch: pytest.MonkeyPatch, settings: Path) -> JupyterHub:
    monkeypatch.setenv("GPUHUB_SETTINGS", str(settings))
    app = JupyterHub()
    app.load_config_file(str(CONFIG_PY))
    return app


def make_user(name: str, groups: list[str]) -> User:
    db = orm.new_session_factory("sqlite://")()
    orm_user = orm.User(name=name)
    db.add(orm_user)
    for group in groups:
        orm_user.groups.append(orm.Group(name=group))
    db.commit()
    return User(orm_user, settings={})


def test_hub_settings(monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory) -> None:
    app = load_hub(monkeypatch, settings_file())
    assert app.cleanup_servers is False
    assert app.upgrade_db is True
    assert app.concurrent_spawn_limit == 7
    assert app.active_server_limit == 40
    assert app.allow_named_servers is True
    assert app.named_server_limit_per_user == 3
    assert app.hub_connect_url == "http://jupyterhub:8081"
    assert app.config.ConfigurableHTTPProxy.should_start is False
    assert app.config.ConfigurableHTTPProxy.auth_token == "a" * 64
    assert app.spawner_class is GpuhubSpawner
    assert app.authenticator_class is GpuhubAuthenticator
    assert issubclass(GpuhubAuthenticator, NativeAuthenticator)


def test_culler_service_has_least_privilege(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    app = load_hub(monkeypatch, settings_file())
    cli, metrics, service = app.services
    assert cli == {"name": "gpuhub-admin", "api_token": "b" * 64, "admin": True}
    assert metrics == {"name": "gpuhub-metrics", "api_token": "c" * 64}
    assert service["name"] == "idle-culler"
    assert "--timeout=1800" in service["command"]
    assert "--cull-every=300" in service["command"]
    assert "--max-age=86400" in service["command"]
    assert not [arg for arg in service["command"] if arg.startswith("--cull-users")]
    metrics_role, role = app.load_roles
    assert metrics_role == {
        "name": "metrics",
        "scopes": ["read:metrics"],
        "services": ["gpuhub-metrics"],
    }
    assert app.authenticate_prometheus is True
    assert role["services"] == ["idle-culler"]
    assert sorted(role["scopes"]) == sorted(
        ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    )

    app = load_hub(monkeypatch, settings_file(culler={"cull_users": True}))
    # The culler really runs with these: hub/tests/test_hub_security.py uses its token.
    assert {"--cull-users=true", "--cull-admin-users=false"} <= set(app.services[2]["command"])
    assert "admin:users" in app.load_roles[1]["scopes"]

    app = load_hub(monkeypatch, settings_file(culler={"enabled": False}))
    assert [s["name"] for s in app.services] == ["gpuhub-admin", "gpuhub-metrics"]
    assert [r["name"] for r in app.load_roles] == ["metrics"]

    app = load_hub(monkeypatch, settings_file(hub={"metrics_token_file": ""}))
    assert "gpuhub-metrics" not in [s["name"] for s in app.services]


def test_native_authenticator_is_hardened(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    app = load_hub(monkeypatch, settings_file(auth={"minimum_password_length": 12}))
    db = orm.new_session_factory("sqlite://")()
    auth = GpuhubAuthenticator(config=app.config, db=db)
    assert auth.open_signup is False
    assert auth.enable_signup is False  # sign-up is an opt-in
    assert auth.minimum_password_length == 12
    assert auth.check_common_password is True
    assert auth.allowed_failed_logins == 5
    assert auth.seconds_before_next_try == 600
    assert auth.admin_users == {"admin"}
    assert auth.is_password_strong("password123") is False  # on the common list
    assert auth.is_password_strong("short") is False


def test_announcement_logout_and_extra_config_run_after_gpuhubs_own(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    extra = {
        # Name order: b runs after a, so it sees (and overrides) what a set.
        "b-override": "c.JupyterHub.shutdown_on_logout = c.JupyterHub.log_level == 'DEBUG'",
        "a-level": "c.JupyterHub.log_level = 'DEBUG'",
    }
    hub = {"announcement": "Down <b>Friday</b>", "shutdown_on_logout": False}
    app = load_hub(monkeypatch, settings_file(hub={**hub, "extra_config": extra}))
    assert app.template_vars["announcement"] == "Down <b>Friday</b>"
    assert app.config.JupyterHub.log_level == "DEBUG"
    assert app.config.JupyterHub.shutdown_on_logout is True
    with pytest.raises(SettingsError, match=r"extra_config \(bad\): does not compile"):
        load_hub(monkeypatch, settings_file(hub={"extra_config": {"bad": "c.X = ("}}))


def test_workshop_mode_lets_anyone_in_and_warns(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = load_hub(monkeypatch, settings_file(auth={"mode": "workshop"}))
    assert app.authenticator_class is DummyAuthenticator
    assert "WITHOUT A PASSWORD" in caplog.text


def test_invalid_settings_stop_the_hub(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    with pytest.raises(SettingsError, match=r"mem_limit: '2X'"):
        load_hub(monkeypatch, settings_file(spawner={"default_limits": {"mem_limit": "2X"}}))


def test_missing_secret_is_named(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    path = settings_file(hub={"proxy_token_file": "/nonexistent/proxy_auth_token"})
    with pytest.raises(RuntimeError, match="cannot read secret /nonexistent/proxy_auth_token"):
        load_hub(monkeypatch, path)


def spawner_for(app: JupyterHub, name: str, groups: list[str], options: dict) -> GpuhubSpawner:
    spawner = GpuhubSpawner(user=make_user(name, groups), config=app.config)
    spawner.user_options = options
    return spawner


def test_spawner_applies_profile_limits_and_volumes(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    app = load_hub(monkeypatch, settings_file())
    spawner = spawner_for(app, "alice", ["staff"], {"image": "evil/image:latest"})
    spawner.apply_profile()
    assert spawner.image == "gpuhub/singleuser-cpu:a1"
    assert spawner.user_options == {"profile": "cpu"}  # the requested image is dropped
    assert spawner.mem_limit == 8 * 1024**3
    assert spawner.cpu_limit == 4.0
    assert spawner.pull_policy == "never"
    assert spawner.remove is True
    # The whole home is mounted, and Lab opens there (shared/ is reachable in its browser).
    assert spawner.notebook_dir == "/home/jovyan"
    home = spawner.gpuhub_settings.spawner.home_root + "/alice"
    assert spawner.volumes[home] == {"bind": "/home/jovyan", "mode": "rw"}
    assert spawner.volumes["/srv/jupyterhub/shared"] == {
        "bind": "/home/jovyan/shared",
        "mode": "ro",
    }
    assert spawner.extra_create_kwargs["labels"] == {
        "gpuhub.user": "alice",
        "gpuhub.server": "",  # the default server (gpuactivity.py)
        "gpuhub.groups": "staff",  # charged for GPU quotas (quotas.py)
        "gpuhub.profile": "cpu",
    }


def test_spawner_confines_every_container(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    app = load_hub(monkeypatch, settings_file(spawner={"pids_limit": 300}))
    spawner = spawner_for(app, "alice", [], {})
    spawner.apply_profile()
    assert spawner.extra_host_config["cap_drop"] == ["ALL"]
    assert spawner.extra_host_config["security_opt"] == ["no-new-privileges:true"]
    assert spawner.extra_host_config["pids_limit"] == 300
    assert spawner.extra_host_config["auto_remove"] is False
    assert spawner.remove is True  # the spawner removes a stopped server itself
    assert spawner.extra_create_kwargs["user"] == "1000:100"
    assert spawner.extra_create_kwargs["entrypoint"] == hardening.ENTRYPOINT
    token = spawner.gpuhub_settings.spawner.tokens_dir + "/jupyter-alice"
    assert spawner.volumes[token] == {"bind": hardening.TOKEN_MOUNT, "mode": "ro"}
    spawner.hub = Hub(public_host="")
    spawner.api_token = "d" * 32
    env = spawner.get_env()
    assert "d" * 32 not in env.values()
    assert env["JUPYTERHUB_USER"] == "alice"
    with pytest.raises(SettingsError, match="pids_limit: 10 is too small"):
        load_hub(monkeypatch, settings_file(spawner={"pids_limit": 10}))


def test_a_legacy_home_moves_at_start_unless_another_server_of_its_user_runs(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory, holders: Holders
) -> None:
    """The storage role marked the home (made when homes were mounted at ~/work only)."""
    ids = {"user_uid": os.getuid(), "user_gid": os.getgid()}
    app = load_hub(monkeypatch, settings_file(spawner=ids))
    settings = GpuhubSpawner(config=app.config).gpuhub_settings.spawner
    user = f"lee{holders.run}"
    home, marks = Path(settings.home_root) / user, Path(settings.legacy_homes_dir)
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("seen at ~/work/notes.txt")
    marks.mkdir(parents=True)
    (marks / user).write_text("legacy\n")

    def prepared() -> GpuhubSpawner:
        spawner = spawner_for(app, user, [], {})
        spawner.apply_profile()
        asyncio.run(spawner.prepare_home())
        return spawner

    # Another server of the user runs with the home at ~/work: mounted the same way.
    other = holders.hold(user, ())
    assert prepared().volumes[str(home)]["bind"] == "/home/jovyan/work"
    assert (home / "notes.txt").exists()
    holders.client.remove_container(other, force=True)
    # None runs: the files move into work/, the whole home is mounted.
    assert prepared().volumes[str(home)]["bind"] == "/home/jovyan"
    assert (home / "work" / "notes.txt").read_text() == "seen at ~/work/notes.txt"
    assert (home / "shared").is_dir()  # the shared folder's mount point, the user's
    assert not (marks / user).exists()


def test_token_file_is_private_and_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jupyter-alice"
    hardening.write_token(path, "first", os.getuid(), os.getgid())
    inode = path.stat().st_ino
    hardening.write_token(path, "second", os.getuid(), os.getgid())
    assert path.read_text() == "second"
    assert path.stat().st_ino == inode
    assert oct(path.stat().st_mode & 0o777) == "0o400"


def test_the_entrypoint_exports_the_token_and_runs_the_image_command(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("e" * 32)
    script = [a.replace(hardening.TOKEN_MOUNT, str(token)) for a in hardening.ENTRYPOINT]
    out = subprocess.run(
        [*script, "sh", "-c", 'echo "$JUPYTERHUB_API_TOKEN $0 $1"', "image-cmd", "arg"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert out.stdout == "e" * 32 + " image-cmd arg\n"
    token.unlink()
    missing = subprocess.run([*script, "true"], capture_output=True, text=True, check=False)
    assert missing.returncode != 0, "a server must not start without its token"


def test_spawner_refuses_a_profile_outside_the_users_groups(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    app = load_hub(monkeypatch, settings_file())
    with pytest.raises(web.HTTPError) as err:
        spawner_for(app, "bob", [], {"profile": "big"}).apply_profile()
    assert err.value.status_code == 403
    big = spawner_for(app, "carol", ["research"], {"profile": "big"})
    big.apply_profile()
    assert (big.mem_limit, big.cpu_limit) == (16 * 1024**3, 8.0)


def test_options_form_lists_only_allowed_profiles(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    app = load_hub(monkeypatch, settings_file())
    assert spawner_for(app, "bob", [], {}).render_options_form() == ""
    form = spawner_for(app, "carol", ["research"], {}).render_options_form()
    assert 'value="cpu"' in form
    assert 'value="big"' in form
    assert GpuhubSpawner.parse_options_form({"profile": ["big"]}) == {"profile": "big"}


def test_shared_packages_directory(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    app = load_hub(monkeypatch, settings_file(spawner={"packages_dir": "/srv/jupyterhub/packages"}))
    spawner = spawner_for(app, "alice", [], {})
    spawner.apply_profile()
    assert spawner.volumes["/srv/jupyterhub/packages"]["bind"] == "/opt/gpuhub/packages"
    assert spawner.environment["PIP_TARGET"] == "/opt/gpuhub/packages"
    assert spawner.environment["PYTHONPATH"] == "/opt/gpuhub/packages"


def test_gpu_profile_gets_device_requests_and_cpu_profile_none(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    gpu_profile = {
        "slug": "gpu",
        "display_name": "One GPU",
        "image": "gpuhub/singleuser-gpu:a1",
        "gpu": {"mode": "exclusive", "count": 1},
    }
    cpu_profile = {"slug": "cpu", "display_name": "CPU", "image": "gpuhub/singleuser-cpu:a1"}
    path = settings_file(
        spawner={
            "profiles": [cpu_profile, gpu_profile],
            "gpus": [{"uuid": "GPU-0", "index": 0, "name": "NVIDIA H100 80GB HBM3"}],
        }
    )
    app = load_hub(monkeypatch, path)
    spawner = spawner_for(app, "alice", [], {"profile": "gpu"})
    assert spawner.apply_profile().gpu == GpuPolicy("exclusive", 1)
    spawner.apply_gpus(Allocation(("GPU-0",), exclusive=True))
    (request,) = spawner.extra_host_config["device_requests"]
    assert request["DeviceIDs"] == ["GPU-0"]
    labels = spawner.extra_create_kwargs["labels"]
    assert labels["gpuhub.gpus"] == "GPU-0"
    # The user sees what they hold (model and UUID), and so does status.yml.
    assert spawner.environment["GPUHUB_GPUS"] == "NVIDIA H100 80GB HBM3 GPU-0"
    assert labels["gpuhub.gpus.description"] == "NVIDIA H100 80GB HBM3 GPU-0"
    spawner.user_options = {"profile": "cpu"}
    spawner.apply_profile()
    assert "device_requests" not in spawner.extra_host_config
    assert "gpuhub.gpus" not in spawner.extra_create_kwargs["labels"]
    assert "gpuhub.gpus.description" not in spawner.extra_create_kwargs["labels"]
    assert "GPUHUB_GPUS" not in spawner.environment


def test_gpu_profiles_need_gpus(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    gpu_profile = {"slug": "gpu", "display_name": "G", "image": "x", "gpu": {"mode": "exclusive"}}
    cpu_profile = {"slug": "cpu", "display_name": "CPU", "image": "y"}
    with pytest.raises(SettingsError, match="gpu mode exclusive, but the host has no GPU"):
        load_hub(monkeypatch, settings_file(spawner={"profiles": [cpu_profile, gpu_profile]}))
    with pytest.raises(SettingsError, match="at least one CPU-only profile"):
        load_hub(
            monkeypatch,
            settings_file(spawner={"profiles": [gpu_profile], "gpus": [{"uuid": "GPU-0"}]}),
        )
