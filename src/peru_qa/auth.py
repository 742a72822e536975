"""Who may do what on a shared chat server: accounts from PERU_QA_AUTH, each with a role.

`PERU_QA_AUTH=ana:s3cret:editor,luis:pw2:reader` gives two accounts. A `reader` may ask, view and export; an
`editor` may also add, replace and remove documents. An account without a role is an editor, so the single
`user:password` of earlier versions keeps every right it had. Without PERU_QA_AUTH there are no accounts: the app
has no login, everything is allowed, and changes are recorded as made by `local` (as from the CLI).

A password may hold ':' when the entry ends with its role (`ana:pa:ss:editor`); it may not hold ','."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

from .errors import PeruQAError

#: The user recorded for changes made without an account: the CLI, the Python API, a chat without logins.
LOCAL_USER = "local"
READER = "reader"
EDITOR = "editor"
#: What each role may do. `replace` is adding a new version of a file already indexed.
PERMISSIONS: dict[str, frozenset[str]] = {
    READER: frozenset({"ask", "view", "export"}),
    EDITOR: frozenset({"ask", "view", "export", "add", "replace", "remove"}),
}
ACTIONS = PERMISSIONS[EDITOR]
#: How a refused action is named in messages.
_VERBS = {"ask": "asking questions", "view": "viewing documents", "export": "exporting answers",
          "add": "adding documents", "replace": "replacing documents", "remove": "removing documents"}


class PermissionDenied(PeruQAError):
    """A logged-in user tried something their role does not allow."""


@dataclass(frozen=True)
class Account:
    user: str
    password: str = field(repr=False)
    role: str = EDITOR


@dataclass(frozen=True)
class Accounts:
    """The accounts of one server, by user name."""

    by_user: dict[str, Account]

    def login(self, user: str, password: str) -> bool:
        """Gradio's `auth` callable: the password compared in constant time (no timing hint of how much matched)."""
        account = self.by_user.get(user)
        return account is not None and hmac.compare_digest(account.password.encode(), password.encode())

    def role(self, user: str | None) -> str | None:
        account = self.by_user.get(user or "")
        return account.role if account else None

    def can(self, user: str | None, action: str) -> bool:
        return can(self, user, action)


def parse_accounts(value: str | None, name: str = "PERU_QA_AUTH") -> Accounts | None:
    """Accounts from `user:password[:role],…`, or None for an empty value. A malformed entry is an error that
    names it (by position and user, never its password)."""
    if value is None or not value.strip():
        return None
    by_user: dict[str, Account] = {}
    for number, raw in enumerate(value.split(","), 1):
        entry = raw.strip()
        parts = entry.split(":")
        user = parts[0].strip()
        # named by its position and user, never by what follows the first ':' (the password)
        shown = f"{name} entry {number}" + (f" ({user}:…)" if user and len(parts) > 1 else "")
        if not entry:
            raise PeruQAError(f"{shown} is empty: accounts are separated by single commas "
                              "(user:password[:role],user:password[:role])")
        if len(parts) < 2:
            raise PeruQAError(f"{shown} has no password: write it as user:password[:role]")
        role = EDITOR
        if len(parts) > 2:
            role = parts[-1].strip().lower()
            if role not in PERMISSIONS:
                raise PeruQAError(f"{shown} does not end with a role: end it with :reader or :editor (a password "
                                  "holding ':' needs the role after it, user:pa:ss:editor)")
            parts = parts[:-1]
        password = ":".join(parts[1:])
        if not user:
            raise PeruQAError(f"{shown} has no user name: write it as user:password[:role]")
        if not password:
            raise PeruQAError(f"{shown} has an empty password")
        if user in by_user:
            raise PeruQAError(f"{shown}: user {user!r} is given twice")
        by_user[user] = Account(user, password, role)
    return Accounts(by_user)


def accounts_from_env() -> Accounts | None:
    """The accounts PERU_QA_AUTH gives, or None (no login)."""
    return parse_accounts(os.environ.get("PERU_QA_AUTH", ""))


def can(accounts: Accounts | None, user: str | None, action: str) -> bool:
    """Whether `user` may do `action`. Without accounts everything is allowed (a local app, as before accounts);
    with accounts, only a known user whose role allows it."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (one of {', '.join(sorted(ACTIONS))})")
    if accounts is None:
        return True
    role = accounts.role(user)
    return role is not None and action in PERMISSIONS[role]


def require(accounts: Accounts | None, user: str | None, action: str) -> None:
    """Raise PermissionDenied, with a message saying what is missing, unless `user` may do `action`."""
    if can(accounts, user, action):
        return
    role = accounts.role(user) if accounts is not None else None
    verb = _VERBS[action]
    if role is None:
        raise PermissionDenied(f"not allowed: {verb} needs a logged-in editor account")
    raise PermissionDenied(f"not allowed: {user} is a {role}, and {verb} needs an editor account "
                           "(ask the server's administrator)")


def actor(user: str | None) -> str:
    """The name an audit entry records: the logged-in user, else `local`."""
    return user or LOCAL_USER



__all__ = ["Account", "Accounts", "PermissionDenied", "LOCAL_USER", "READER", "EDITOR", "PERMISSIONS",
           "parse_accounts", "accounts_from_env", "can", "require", "actor"]
