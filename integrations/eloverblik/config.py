"""The Eloverblik configuration: where the data hub is, the refresh token (a secret reference,
never the token), the reconciliation's margin, and which metering point is which branch's
meter. ``sample.yaml`` beside this file is the documented example (a test loads it).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from openbranch.edge.core.config import SecretRef
from openbranch.edge.core.yamlsource import load_yaml, validate
from openbranch.integrations.eloverblik.client import DEFAULT_URL

__all__ = ["EloverblikFile", "EloverblikSettings", "MeteringPoint", "load_eloverblik"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EloverblikSettings(_Model):
    url: HttpUrl = Field(default=HttpUrl(DEFAULT_URL), description="the customer API's base URL")
    refresh_token: SecretRef = Field(description="{file: PATH} or {env: VARIABLE}")
    margin_pct: Decimal = Field(
        default=Decimal(2),
        gt=0,
        le=100,
        description="a month whose gateway kWh differ from the utility's by more raises an alert",
    )
    min_hours: int = Field(
        default=24, ge=1, description="measured hours both sides need before a month is judged"
    )
    days_back: int = Field(
        default=10,
        ge=1,
        le=365,
        description="each import asks again for this many days (days the hub publishes late)",
    )


class MeteringPoint(_Model):
    id: str = Field(pattern=r"^\d{18}$", description="the GSRN, 18 digits")
    branch: str = Field(min_length=1)
    device: str = Field(min_length=1, description="the gateway's meter of the same supply")


class EloverblikFile(_Model):
    eloverblik: EloverblikSettings
    metering_points: list[MeteringPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> EloverblikFile:
        seen: set[str] = set()
        for point in self.metering_points:
            if point.id in seen:
                raise ValueError(f"metering point {point.id} is listed twice")
            seen.add(point.id)
        return self


def load_eloverblik(path: Path | str) -> EloverblikFile:
    """The file at ``path``; ``ConfigError`` naming file, line and field otherwise."""
    return validate(EloverblikFile, load_yaml(path))
