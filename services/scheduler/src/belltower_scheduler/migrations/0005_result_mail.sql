-- Who gets each run's result by e-mail: {"to": [...], "on": "default"|"always"|"failure"}, NULL for nobody.
ALTER TABLE scheduler.jobs ADD COLUMN result_mail jsonb;
