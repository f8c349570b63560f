"""The API's reference page, rendered on our origin from the OpenAPI document (no CDN, no script)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from api.endpoints import openapi_document
from api.problems import PROBLEMS

METHODS = ("get", "post", "put", "patch", "delete")


def _ref_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else ""


def _type_text(schema: dict[str, Any]) -> str:
    """A short human type: "integer", "string | null", "TrainingOut", "array of ImageOut"."""
    if not schema:
        return "any"
    if "$ref" in schema:
        return _ref_name(schema)
    if "anyOf" in schema:
        return " | ".join(_type_text(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type_text(schema.get('items', {}))}"
    text = str(schema.get("type", "object"))
    if "enum" in schema:
        text += " (" + ", ".join(str(v) for v in schema["enum"]) + ")"
    elif "const" in schema:
        text += f" ({schema['const']})"
    return text


def _limits_text(schema: dict[str, Any]) -> str:
    parts = []
    for key, label in (("minimum", "≥"), ("maximum", "≤"), ("maxLength", "length ≤")):
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    if "default" in schema:
        parts.append(f"default {schema['default']}")
    return ", ".join(parts)


def _fields(schema: dict[str, Any]) -> list[dict[str, str]]:
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "type": _type_text(prop),
            "required": "yes" if name in required else "",
            "limits": _limits_text(prop),
            "description": str(prop.get("description", "")),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def reference_context(document: dict[str, Any]) -> dict[str, Any]:
    operations = []
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            responses = []
            for status, answer in op.get("responses", {}).items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                responses.append(
                    {
                        "status": status,
                        "type": _type_text(schema) if schema else "",
                        "description": answer.get("description", ""),
                    }
                )
            operations.append(
                {
                    "anchor": op.get("operationId", f"{method}-{path}"),
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "tag": (op.get("tags") or [""])[0],
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "type": _type_text(p.get("schema", {})),
                            "required": "yes" if p.get("required") else "",
                            "limits": _limits_text(p.get("schema", {})),
                            "description": p.get("description", "")
                            or p.get("schema", {}).get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": _type_text(body) if body else "",
                    "responses": responses,
                }
            )
    schemas = [
        {"name": name, "fields": _fields(schema), "description": schema.get("description", "")}
        for name, schema in sorted(document.get("components", {}).get("schemas", {}).items())
    ]
    problems = [
        {"slug": slug, "status": status, "title": title} for slug, (status, title) in PROBLEMS.items()
    ]
    return {"doc": document, "operations": operations, "schemas": schemas, "problems": problems}


@require_GET
def reference(request: HttpRequest) -> HttpResponse:
    return render(request, "api/reference.html", reference_context(openapi_document()))
