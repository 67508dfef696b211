from django.apps import AppConfig


class ChangesConfig(AppConfig):
    name = "changes"
    verbose_name = "Changes and webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.conf import settings

        from . import delivery, wakeup

        if settings.CELERY_BROKER_URL:
            from . import tasks

            wakeup.on_deliveries(tasks.deliver_webhooks.delay)
        else:
            wakeup.on_deliveries(delivery.kick)
