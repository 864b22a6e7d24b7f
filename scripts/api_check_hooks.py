"""schemathesis hooks for scripts/api-check.sh (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis
from schemathesis import GenerationMode


@schemathesis.hook
def map_case(context, case):
    """A schema-valid hold names each seat once (`uniqueItems`); drawing seat ids from the
    seat dictionary can repeat one, so valid cases keep each seat's first place."""
    body = case.body
    if (
        case.meta is not None
        and case.meta.generation.mode == GenerationMode.POSITIVE
        and context.operation.label == "POST /api/v1/reservations"
        and isinstance(body, dict)
        and isinstance(body.get("seatIds"), list)
    ):
        body["seatIds"] = list(dict.fromkeys(body["seatIds"]))
    return case
