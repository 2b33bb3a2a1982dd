"""A SimpleAuthManager that hides one DAG from one user, for the UI plugin's 403 and spend-filter tests.

SimpleAuthManager's roles are global (a viewer reads every DAG), so per-DAG denial needs an auth manager
that decides per DAG, as real ones (FAB, Keycloak) do. Everything else is SimpleAuthManager's: its JWTs,
its ``/auth/token`` login, its users and roles. Set as ``[core] auth_manager`` by the test.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

#: The user who may not read ``DENIED_DAG`` (role viewer: may read the module's other DAGs).
LIMITED_USER = "limited"
#: A viewer who may read every DAG of the module, ``DENIED_DAG`` included.
AUDITOR_USER = "auditor"
DENIED_DAG = "ws_ui_secret"
#: The UI tests' own DAGs. Both users read nothing else, so other tests' runs in the same metadata DB (pytest-xdist
#: workers share one per worker) never show up in their spend.
MODULE_DAG_PREFIX = "ws_ui_"


class OneDagDeniedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if user.get_name() in (LIMITED_USER, AUDITOR_USER) and details is not None:
            if not str(details.id).startswith(MODULE_DAG_PREFIX):
                return False
            if user.get_name() == LIMITED_USER and details.id == DENIED_DAG:
                return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
