-- School calendars: named sets of non-school days (holidays, breaks) that jobs may skip or move past.
CREATE TABLE scheduler.calendars (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scheduler.non_school_days (
    calendar text NOT NULL REFERENCES scheduler.calendars (name) ON DELETE CASCADE,
    day      date NOT NULL,
    label    text NOT NULL DEFAULT '',
    PRIMARY KEY (calendar, day)
);

-- Jobs name their calendar inside the schedule document; this finds the users of a calendar.
CREATE INDEX jobs_calendar ON scheduler.jobs ((schedule ->> 'calendar')) WHERE schedule ->> 'calendar' IS NOT NULL;
