"""Celery tasks of the pipeline (SPEC §10 "Workers"); the work is in runs/pipeline/driver.py."""

from celery import shared_task

from runs.pipeline import driver


@shared_task(bind=True, name=driver.TASK, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def run_node(self, run_id: str, node: str):
    """Run one node of one run. A generator that raised is tried again after a backoff:
    the attempts are counted in the run's steps, not in Celery's retry count."""
    wait = driver.execute(run_id, node)
    if wait is not None:
        raise self.retry(countdown=wait)
