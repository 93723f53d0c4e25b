"""A Notification Service for the version-change test only: the new participant that version 2 of
the order saga adds a step for. It is installed by its own settings module (settings.py), which
the test gives to the processes it restarts as the "new code"; production never loads it."""
