"""JSON shapes of the individual's profile API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CustomFieldOut(BaseModel):
    key: str
    label: str
    value: str


class ProfileOut(BaseModel):
    fields: dict[str, Any] = Field(description="Standard fields that are filled in, by key.")
    custom: list[CustomFieldOut]


class FieldValueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str | list[str] | dict[str, str] = Field(
        description="A string, a list of choices (dietary), or an object (address, shoe_size)."
    )


class FieldValueOut(BaseModel):
    key: str
    value: Any


class CustomFieldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(max_length=200)
    value: str = Field(max_length=2000)


class FieldSpecOut(BaseModel):
    key: str
    label: str
    kind: str
    scope: str
