"""ansible.cfg's strategy: Mitogen's linear strategy, from the pinned toolchain.

Mitogen keeps one Python interpreter per host for the whole run and sends each task to
it, instead of starting a new interpreter (and unpacking the module) for every task:
a task on a test host costs about 0.03 s instead of 0.35 s, which halves a no-op
converge. Tasks run in the same order and with the same results as with Ansible's own
linear strategy.

Ansible's own local connection stays in charge of this machine (tasks delegated to
localhost, and the default inventory): it skips `become` when Ansible already runs as
root, where Mitogen would run sudo, which a bare machine may not have. Remote hosts
need sudo for `become` even when Ansible logs in as root (Ubuntu always has it).

Mitogen comes with `make bootstrap` (requirements-dev.txt). An Ansible without it runs
the playbooks with the linear strategy, after a warning. ANSIBLE_STRATEGY=linear opts
out.
"""

from __future__ import annotations

from ansible.utils.display import Display

try:
    import ansible_mitogen.planner
    import ansible_mitogen.strategy
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule
except ImportError:
    Display().warning(
        "Mitogen is not installed in this Ansible's Python (run `make bootstrap` and use "
        ".venv/bin/ansible-playbook): running with the slower linear strategy."
    )
    from ansible.plugins.strategy.linear import StrategyModule
else:
    # Every module runs in a child forked from a Python that has run none: state a module
    # leaves in its libraries cannot reach the next task (community.docker's docker_container
    # keeps one task's `comparisons` for the next one in the same process, so a hub whose
    # image changed was not recreated after the proxy's task ignored image changes).
    ansible_mitogen.planner.NewStylePlanner.should_fork = lambda self: True
    ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS = tuple(
        name for name in ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS if name != "local"
    )

__all__ = ["StrategyModule"]
