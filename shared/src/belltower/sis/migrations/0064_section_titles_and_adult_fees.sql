-- A section's stored display title (Focus's course period title), made from its course, period,
-- lead teacher and term by a title template; NULL until a title is given. Retitle Sections
-- recomputes it after the parts were edited straight in the database.
ALTER TABLE sis.sections ADD COLUMN title text;

-- Florida adult education on the student schedule record (an enrollment): the schedule's cost
-- reporting code (CRC, e.g. 371, 401) and the Adult Fee Status (First) and (Second) codes the
-- state's WDIS survey reports (single letters; NULL is blank). Calculate Adult Fees (FPS) sets
-- them to K / blank where the CRC is 371 or 372.
ALTER TABLE sis.enrollments
    ADD COLUMN cost_reporting_code     text,
    ADD COLUMN adult_fee_status_first  text CHECK (adult_fee_status_first ~ '^[A-Z]$'),
    ADD COLUMN adult_fee_status_second text CHECK (adult_fee_status_second ~ '^[A-Z]$');
CREATE INDEX enrollments_cost_reporting_code ON sis.enrollments (cost_reporting_code)
    WHERE cost_reporting_code IS NOT NULL;
