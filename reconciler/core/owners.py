"""The owner (image factory) accounts of a manifest: the role each is reached through, and
the read-only role its plans may use instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import Problem
from .model import Arn
from .schema import fmt_path
from .yamlload import Located


@dataclass(frozen=True)
class Owner:
    role_arn: str | None
    regions: tuple[str, ...] = ()
    # a read-only role in the same account, for the commands that only read (plan, explain,
    # verify, event --detect-only, usage-reports --dry-run): a pull-request plan then holds
    # no write access
    plan_role_arn: str | None = None

    def matches(self, owner: str) -> bool:
        """Is this the owner ``--owner`` names (by role ARN or account ID)?"""
        return self.role_arn is not None and owner in (self.role_arn, self.plan_role_arn,
                                                       Arn.parse(self.role_arn).account)

    def role(self, write: bool) -> str | None:
        """The role a command assumes: the plan role for reading when there is one."""
        return self.role_arn if write else self.plan_role_arn or self.role_arn


def plan_role_problems(doc: Located, settings: dict[str, Any],
                       owners: list[dict[str, Any]]) -> list[Problem]:
    """A plan role reads what its role writes: it needs that role, in the same account."""
    problems = []
    for path, where in [(("settings",), settings),
                        *((("owners", i), o) for i, o in enumerate(owners))]:
        plan_role, role = where.get("plan_role_arn"), where.get("role_arn")
        if not plan_role:
            continue
        at, key = fmt_path((*path, "plan_role_arn")), (*path, "plan_role_arn")
        if not role and path == ("settings",) and owners:
            problems.append(doc.problem(key, f"{at}: with owners:, give each owner its "
                                             "plan_role_arn"))
        elif not role:
            problems.append(doc.problem(key, f"{at}: a plan role needs role_arn beside it (the "
                                             "role apply writes with, in the same account)"))
        elif (mine := _where(plan_role)) != (theirs := _where(role)):
            problems.append(doc.problem(key, f"{at}: {plan_role!r} is in account {mine}, its "
                                             f"role_arn in {theirs}: a plan role reads the "
                                             "account its role_arn writes"))
    return problems


def _where(role_arn: str) -> str:
    """A role's account, and its partition when not the commercial one."""
    arn = Arn.parse(role_arn)
    return arn.account if arn.partition == "aws" else f"{arn.account} ({arn.partition})"
