"""``/_emulator/*``: unauthenticated control endpoints for out-of-process use (CLI emulator)."""

from __future__ import annotations

import json

from airflow_provider_wavespeed.emulator.api import BadRequest, parse_json_object
from airflow_provider_wavespeed.emulator.config import ConfigError, apply_config_updates
from airflow_provider_wavespeed.emulator.context import AppContext
from airflow_provider_wavespeed.emulator.models import ModelCatalogueError, load_models
from airflow_provider_wavespeed.emulator.wire import Request, Response, error, ok


def handle_control(ctx: AppContext, request: Request) -> Response:
    action = request.path[len("/_emulator/") :].strip("/")
    method = request.method
    if action == "stats" and method == "GET":
        data = ctx.stats.to_json()
        data["balance"] = ctx.config.balance
        data["predictions"] = len(ctx.state.predictions)
        return ok(data)
    if action == "config" and method == "GET":
        return ok(ctx.config.to_json())
    if action == "config" and method == "POST":
        try:
            apply_config_updates(ctx.config, parse_json_object(request, empty_ok=False))
        except (BadRequest, ConfigError) as exc:
            return error(400, str(exc))
        return ok(ctx.config.to_json())
    if action == "models" and method == "POST":
        try:
            body = json.loads(request.body or b"null")
            if not isinstance(body, list):
                raise ModelCatalogueError("expected a JSON list of model objects")
            added = ctx.add_models(load_models(body))
        except (ValueError, UnicodeDecodeError) as exc:  # ModelCatalogueError is a ValueError
            return error(400, f"Invalid models: {exc}")
        return ok({"added": added})
    if action == "reset" and method == "POST":
        ctx.reset()
        return ok({"reset": True})
    if action == "release" and method == "POST":
        try:
            ids = parse_json_object(request, empty_ok=False).get("ids")
        except BadRequest as exc:
            return error(400, str(exc))
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return error(400, "Invalid parameter 'ids': must be an array of prediction ids")
        released = [i for i in ids if i in ctx.state.predictions]
        for prediction_id in released:
            ctx.state.predictions[prediction_id].released = True
        return ok({"released": released})
    if action == "predictions" and method == "GET":
        now = ctx.state.now()
        return ok(
            {
                r.id: {
                    "model": r.model,
                    "inputs": r.inputs,
                    "created_at": r.created_at,
                    "outcome": r.outcome,
                    "status": r.status(now, hold=ctx.config.hold_predictions),
                    "webhook": r.webhook,
                }
                for r in ctx.state.predictions.values()
            }
        )
    if action in ("stats", "config", "reset", "predictions", "release", "models"):
        return error(405, f"method not allowed: {method} {request.path}")
    return error(404, f"not found: {request.path}")
