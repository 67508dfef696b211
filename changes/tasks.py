"""Celery's delivery of webhooks, when a broker is configured (SPEC §14)."""

from celery import shared_task

from . import delivery


@shared_task(name="changes.deliver_webhooks", acks_late=True, ignore_result=True)
def deliver_webhooks():
    delivery.deliver_due()
