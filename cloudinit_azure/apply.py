"""Apply a plan to the machine: the account, sshd's setting, key pairs, host keys, host name.

A first boot that is not a pool VM's runs the steps one after the other, in
:data:`STEP_ORDER` (the account's, then the host's; the host's only after the
account succeeded). A preprovisioned VM's customer, whose time from the
assignment to Ready counts, runs three branches side by side (the flow's
``together`` seam runs them):

- the account: the user (cloud-init's distro API), then the key pairs in its home;
- the host: sshd's password setting, then kept host keys checked;
- the host name, in a branch of its own;
- a new instance's host keys (ssh-keygen) come after the branches, once the
  account is whole (a power cut in ssh-keygen must not land inside useradd).

No step of the host's branches reads or writes what the account's steps do, with
one exception the machine tells us about: where sshd's setting goes into
``sshd_config`` itself (the image has no drop-in directory), cloud-init's key
step reads that file for ``AuthorizedKeysFile`` while it may be rewritten. The
setting then runs in the account's branch, between the user and the key
pairs, one after the other as before. sshd's setting stays ahead of the host
keys (a running sshd restarts on the keys it has).

The rules, whatever the timing:

- Ready only after every branch ended and every step succeeded;
- one failure report, for the first failing step in the order
  :data:`STEP_ORDER` (a failure in another branch is only logged);
- no half-created user: after a failed account step (:data:`ACCOUNT_STEPS`),
  once every branch stopped, the user is removed if this run created it.

Pure orchestration over the ``Machine`` seam; no I/O of its own.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from cloudinit_azure.flowstate import READY_FROM_MODULE, ApplyError

if TYPE_CHECKING:
    from cloudinit_azure import keypairs, provision
    from cloudinit_azure.flow import Run
    from cloudinit_azure.flowstate import Machine

LOG = logging.getLogger(__name__)

STEP_ORDER = ("user", "password authentication", "key pairs", "host keys", "host name")
ACCOUNT_STEPS = frozenset(STEP_ORDER[:3])

# Runs every job (none raises) and returns once all have ended.
Together = Callable[[Sequence[Callable[[], None]]], None]


def in_threads(jobs: Sequence[Callable[[], None]]) -> None:
    """The first job in this thread, each other one in a thread of its own; join all."""
    threads = [threading.Thread(target=job, name=f"cloudinit-azure-apply-{i}", daemon=True)
               for i, job in enumerate(jobs[1:], 1)]
    for thread in threads:
        thread.start()
    try:
        if jobs:
            jobs[0]()
    finally:
        for thread in threads:
            thread.join()


def in_turn(jobs: Sequence[Callable[[], None]]) -> None:
    """One job after the other (tests that want one order; a machine with one CPU)."""
    for job in jobs:
        job()


@dataclass
class Branch:
    """Steps that must run in order; a branch stops at its first failure."""

    phase: str
    steps: list[tuple[str, Callable[[], Any]]]
    failed: Optional[tuple[str, BaseException]] = None
    seconds: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)

    def job(self, clock: Callable[[], float]) -> Callable[[], None]:
        def run() -> None:
            started = clock()
            try:
                for step, action in self.steps:
                    try:
                        self.results[step] = action()
                    except BaseException as exc:  # recorded: the flow decides, after the join
                        self.failed = (step, exc)
                        return
            finally:
                self.seconds = clock() - started
        return run


def run_branches(branches: Sequence[Branch], together: Together,
                 clock: Callable[[], float]) -> Optional[tuple[str, BaseException]]:
    """Run the branches side by side; the first failure in :data:`STEP_ORDER`, or None."""
    together([b.job(clock) for b in branches])
    failures = sorted((b.failed for b in branches if b.failed),
                      key=lambda f: STEP_ORDER.index(f[0]) if f[0] in STEP_ORDER else 99)
    for _step, exc in failures:
        if not isinstance(exc, Exception):
            raise exc  # SystemExit, KeyboardInterrupt: not a provisioning failure
    for step, exc in failures[1:]:
        LOG.error("%s also failed: %s: %s", step, type(exc).__name__, exc)
    return failures[0] if failures else None


def _stages(machine: Machine, plan: provision.Provisioning,
            files: Sequence[keypairs.KeyPairFile], *, new_instance: bool,
            side_by_side: bool) -> list[list[Branch]]:
    """The branches of each stage; a stage runs once the one before it succeeded."""
    user = ("user", lambda: machine.create_user(plan))
    key_pairs = ("key pairs", lambda: machine.install_key_pairs(plan.username, files))
    keys = ("host keys", lambda: machine.generate_host_keys(new_instance))
    name = ("host name", lambda: machine.set_hostname(plan.hostname))
    pwauth = plan.config.get("ssh_pwauth")
    sshd = ([("password authentication", lambda: machine.set_password_auth(bool(pwauth)))]
            if pwauth is not None else [])
    if not side_by_side:  # one step after the other, in STEP_ORDER
        return [[Branch("account", [user, *sshd, key_pairs])], [Branch("host", [keys, name])]]
    account = Branch("account", [user, key_pairs])
    host = Branch("host", [])
    # A new instance's keys are made (ssh-keygen) once the account is whole, so a
    # power cut then never lands inside useradd (a killed useradd leaves shadow's
    # lock files, which a recovery boot may find held by a reused pid); kept keys
    # (a preprovisioned customer's, made while waiting) are only checked, beside it.
    later = Branch("host", [keys] if new_instance else [])
    if not new_instance:
        host.steps.insert(0, keys)
    if sshd and machine.password_auth_in_drop_in():
        host.steps[:0] = sshd
    else:
        account.steps[1:1] = sshd
    # The host name in a branch of its own: no step of the others waits for it.
    return [[account, host, Branch("host", [name])], [later]]


def apply_plan(flow: Run, plan: provision.Provisioning,
               files: Sequence[keypairs.KeyPairFile], *, new_instance: bool,
               side_by_side: bool = False) -> bool:
    """Account, sshd setting, key pairs, host keys and host name; False when deferred.

    ``side_by_side`` (a pool VM's customer, where the time to Ready counts):
    the account's and the host's branches at once; otherwise every step in
    turn, in :data:`STEP_ORDER`. Raises :class:`ApplyError` naming the step
    that failed (nothing reported here).
    """
    started = flow.clock()
    machine = flow.machine
    blocker = machine.account_blocker(machine.home_dir(plan.username))
    if blocker is not None:
        LOG.info("account not created in init-local (%s): Ready comes from azure_ready "
                 "after cloud-init's user modules", blocker)
        machine.stage_key_pairs(files)
        flow.update(ready_from=READY_FROM_MODULE, deferred_reason=blocker,
                    key_pairs=tuple((f.fingerprint, f.path) for f in files))
        flow.phase("account", "deferred", started, blocker)
        return False
    existed = plan.username in machine.existing_users()
    ran: list[list[Branch]] = []
    failure = None
    for stage in _stages(machine, plan, files, new_instance=new_instance,
                         side_by_side=side_by_side):
        stage = [branch for branch in stage if branch.steps]
        if stage:
            failure = run_branches(stage, flow.together, flow.clock)
            ran.append(stage)
            if failure is not None:
                break
    if failure is not None and failure[0] in ACCOUNT_STEPS and not existed:
        try:
            machine.remove_user(plan.username)
        except Exception as undo:  # the failure report matters more
            LOG.error("could not remove the half-created user %s: %s", plan.username, undo)
    for branch in (b for stage in ran for b in stage):
        if "host keys" in branch.results:
            flow.update(host_keys=branch.results["host keys"])
    for phase, detail in (("account", plan.username), ("host", "")):
        # A phase's time: its longest branch of each stage, the stages one after the other.
        took = [max(b.seconds for b in mine) for mine in
                ([b for b in stage if b.phase == phase] for stage in ran) if mine]
        if not took:
            continue
        failed = [b.failed[0] for stage in ran for b in stage if b.phase == phase and b.failed]
        outcome, text = (("failed", failed[0]) if failed else
                         ("ok", detail or f"{len(flow.state.host_keys)} host keys"))
        flow.phase(phase, outcome, started, text, seconds=sum(took))
    if failure is not None:
        raise ApplyError(step=failure[0], exc=failure[1]) from failure[1]
    return True
