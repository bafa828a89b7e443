-- A OneRoster REST push (rostering.oneroster_rest_push) keeps what the service last took in
-- sis.lms_sync_records like the LMS syncs do, under OneRoster's own resource names. Additive:
-- the kinds the LMS syncs use stay allowed.
ALTER TABLE sis.lms_sync_records DROP CONSTRAINT lms_sync_records_kind_check;
ALTER TABLE sis.lms_sync_records ADD CONSTRAINT lms_sync_records_kind_check CHECK (kind IN (
    'user', 'course', 'section', 'enrolment',
    'org', 'academicSession', 'class', 'enrollment'
));
