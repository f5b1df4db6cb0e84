"""The ``principals:`` section: what each principal (the CLI, a peer, a reactor...) holds.

It is built after ``reactors`` (it ``needs`` them): ``reactor:<id>`` and ``schedule:<id>``
must name a configured reactor.
"""

from __future__ import annotations

from edgeagent.config.grants import Grants, grants_parser, render_grants
from edgeagent.config.located import Node, did_you_mean, join_path
from edgeagent.config.sections import BuildContext, Section, reactors
from edgeagent.reactors.capabilities import principal_problem

#: The built-in grants: the local CLI is an admin (its control socket is owner-only).
DEFAULT_PRINCIPALS: Grants = (("cli", ("admin",)),)


def _build_principals(node: Node | None, path: str, ctx: BuildContext) -> Grants:
    if node is None:
        return DEFAULT_PRINCIPALS
    principals = grants_parser(principal_problem, "principal", "grants")(node, path, ctx.issues)
    if principals is None:
        return DEFAULT_PRINCIPALS
    # ``reactor:<id>`` and ``schedule:<id>`` must name a configured reactor: a typo there
    # would silently grant nothing.
    ids = [reactor.id for reactor in ctx.value(reactors.SECTION)]
    assert isinstance(node.value, dict)
    for name, _ in principals:
        kind, _, ident = name.partition(":")
        if kind in ("reactor", "schedule") and ident not in ids:
            child = node.value[name]
            ctx.issues.add(
                child.key_where or child.where,
                join_path(path, name),
                f"no reactor '{ident}' is configured"
                + did_you_mean(ident, ids).replace("'", f"'{kind}:", 1),
            )
    return principals


SECTION: Section[Grants] = Section(
    "principals", _build_principals, render_grants, needs=(reactors.SECTION.key,)
)
