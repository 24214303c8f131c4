"""Retraining on a schedule on the local target: cron expressions, the schedule definitions file, the history in
the state home, the scheduler that starts due runs, and the drift trigger."""
