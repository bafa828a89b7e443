"""The schedule engine: what a schedule is, how it is validated, and when it fires next.

Pure logic with no I/O, shared by the scheduler (dispatch), the CLI and the console (validation
before a request is sent) and previews. Calendar rules (daily, weekly, monthly, cron, RRULE)
produce local wall-clock times, which are turned into instants by the schedule's daylight-saving
policy. The defaults are Debian cron's: a fixed local time inside the spring-forward gap fires
once at the end of the gap, one inside the repeated autumn hour fires once, on its first pass;
cron lines with a wildcard minute or hour (and RRULEs that repeat hourly or faster) follow the
wall clock, so their times in the gap do not happen and those in the repeated hour happen twice.
Intervals count elapsed time and ignore DST. Cron expressions are expanded by cronsim, RRULEs by
dateutil.

The rooms: ``model`` (the Structs and forms), ``parse`` (typed text into values), ``flags``
(``ScheduleFlags``: the CLI's flags and the console's form into a Schedule), ``compile``
(validation into a CompiledSchedule), ``engine`` (the occurrences), ``describe`` (in words).
"""

from .compile import compile_schedule
from .describe import describe
from .engine import CompiledSchedule
from .flags import ScheduleFlags
from .model import (
    AFTER_END,
    BEFORE_START,
    CRON_FORM,
    DATETIME_FORM,
    DST_GAP_FORM,
    DST_GAP_SKIPPED,
    DST_REPEAT_FORM,
    DUPLICATE,
    EVERY_FORM,
    HORIZON,
    JITTER_FORM,
    MONTHLY_FORM,
    MOVED_TO_NEXT_SCHOOL_DAY,
    NON_SCHOOL_DAY,
    ON_DEMAND_FORM,
    ON_DEMAND_TEXT,
    OUTSIDE_WINDOW,
    RRULE_FORM,
    TIME_FORM,
    TIMES_FORM,
    TZ_FORM,
    WEEKDAY_FILTERED,
    WEEKDAYS,
    WEEKDAYS_FORM,
    WINDOW_FORM,
    Cron,
    Daily,
    Every,
    Monthly,
    Occurrence,
    Once,
    OnDemand,
    RRule,
    Rule,
    Schedule,
    Weekly,
    Window,
    schedule_decoder,
    schedule_encoder,
)
from .parse import (
    parse_datetime,
    parse_every,
    parse_monthly,
    parse_times,
    parse_weekdays,
    parse_window,
    zone,
)
from .spread import HASH_FORM, is_spread

__all__ = [
    "AFTER_END",
    "BEFORE_START",
    "CRON_FORM",
    "DATETIME_FORM",
    "DST_GAP_FORM",
    "DST_GAP_SKIPPED",
    "DST_REPEAT_FORM",
    "DUPLICATE",
    "EVERY_FORM",
    "HASH_FORM",
    "HORIZON",
    "JITTER_FORM",
    "MONTHLY_FORM",
    "MOVED_TO_NEXT_SCHOOL_DAY",
    "NON_SCHOOL_DAY",
    "ON_DEMAND_FORM",
    "ON_DEMAND_TEXT",
    "OUTSIDE_WINDOW",
    "RRULE_FORM",
    "TIMES_FORM",
    "TIME_FORM",
    "TZ_FORM",
    "WEEKDAYS",
    "WEEKDAYS_FORM",
    "WEEKDAY_FILTERED",
    "WINDOW_FORM",
    "CompiledSchedule",
    "Cron",
    "Daily",
    "Every",
    "Monthly",
    "Occurrence",
    "OnDemand",
    "Once",
    "RRule",
    "Rule",
    "Schedule",
    "ScheduleFlags",
    "Weekly",
    "Window",
    "compile_schedule",
    "describe",
    "is_spread",
    "parse_datetime",
    "parse_every",
    "parse_monthly",
    "parse_times",
    "parse_weekdays",
    "parse_window",
    "schedule_decoder",
    "schedule_encoder",
    "zone",
]
