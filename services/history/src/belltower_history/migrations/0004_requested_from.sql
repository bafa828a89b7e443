-- Run now: the address the request came from, next to who asked (requested_by).
ALTER TABLE history.runs ADD COLUMN requested_from text;
