"""Rows of the SQL store's tables to records and back, shared by :mod:`deskpilot.store.sql` and the queue's
reads (:mod:`deskpilot.store.queue`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from deskpilot.domain import Route
from deskpilot.store.records import DecisionRecord, FeedbackRecord, ShadowPair, ShadowRecord


def decision_row(record: DecisionRecord) -> dict[str, Any]:
    return {
        "tenant": record.tenant,
        "request_id": record.request_id,
        "ticket_id": record.ticket_id,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "intent": record.intent,
        "confidence": record.confidence,
        "route": record.route.value,
        "alternatives": [{"intent": intent, "confidence": score} for intent, score in record.alternatives],
        "latency_ms": record.latency_ms,
        "text": record.text,
        "fallback": record.fallback,
        "reason": record.reason,
        "http_request_id": record.http_request_id,
        "review_sample": record.review_sample,
        "channel": record.channel,
        "created_at": record.created_at,
    }


def decision_from_row(row: sa.Row[Any]) -> DecisionRecord:
    return DecisionRecord(
        tenant=row.tenant,
        request_id=row.request_id,
        ticket_id=row.ticket_id,
        model_name=row.model_name,
        model_version=row.model_version,
        intent=row.intent,
        confidence=row.confidence,
        route=Route(row.route),
        alternatives=tuple((alt["intent"], alt["confidence"]) for alt in row.alternatives),
        latency_ms=row.latency_ms,
        text=row.text,
        fallback=row.fallback,
        reason=row.reason,
        http_request_id=row.http_request_id,
        review_sample=row.review_sample,
        channel=row.channel,
        created_at=row.created_at,
    )


def feedback_from_row(row: sa.Row[Any]) -> FeedbackRecord:
    return FeedbackRecord(
        tenant=row.tenant,
        request_id=row.request_id,
        correct_intent=row.correct_intent,
        predicted_intent=row.predicted_intent,
        model_version=row.model_version,
        created_at=row.created_at,
    )


def shadow_row(record: ShadowRecord) -> dict[str, Any]:
    return {
        "tenant": record.tenant,
        "request_id": record.request_id,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "intent": record.intent,
        "confidence": record.confidence,
        "route": record.route.value,
        "created_at": record.created_at,
    }


def shadow_pair(row: sa.Row[Any]) -> ShadowPair:
    return ShadowPair(
        tenant=row.tenant,
        request_id=row.request_id,
        champion_version=row.champion_version,
        champion_intent=row.champion_intent,
        champion_confidence=row.champion_confidence,
        champion_route=Route(row.champion_route),
        challenger_version=row.model_version,
        challenger_intent=row.intent,
        challenger_confidence=row.confidence,
        challenger_route=Route(row.route),
        correct_intent=row.correct_intent,
        created_at=row.created_at,
    )
