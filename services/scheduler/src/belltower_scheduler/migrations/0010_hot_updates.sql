-- Room on each page for heap-only (HOT) updates of the rows the dispatcher rewrites.
--
-- When an updated row's new version fits on its page and no indexed column changed, PostgreSQL
-- writes no index entry for it (a HOT update); on a full page the new version goes elsewhere
-- and gets an entry in every index of the table. Rows written at the default fill leave no room.
--
-- scheduler.jobs: every dispatch rewrites each due job's next_run_at (Store.plan), which is in
-- no index. Measured (bench dispatch_rate, 100,000 due at once): all of those updates became
-- HOT, and PostgreSQL's CPU per dispatched occurrence fell by about a third.
--
-- scheduler.occurrences: after its insert a row is updated three times, marked dispatched (not
-- HOT: state is in the partial indexes' conditions) and then given its run's status twice
-- (run_status, run_error, run_finished_at: in no index, so HOT when there is room). Measured
-- over that whole life: about 30% less PostgreSQL CPU per occurrence, and a smaller table,
-- as the versions no longer spread over new pages.
--
-- Pages written before this keep their fill until their rows are next moved.
ALTER TABLE scheduler.jobs SET (fillfactor = 50);
ALTER TABLE scheduler.occurrences SET (fillfactor = 60);
