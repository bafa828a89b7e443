"""Loading pauses the cyclic garbage collector, and gives it back as it found it."""

import gc

from belltower_scheduler.dispatcher import _collector_paused


def test_the_collector_is_paused_while_loads_overlap_and_restarted_after_the_last() -> None:
    assert gc.isenabled()
    first, second = _collector_paused(), _collector_paused()
    first.__enter__()
    assert not gc.isenabled()
    second.__enter__()  # a second partition starts loading before the first is done
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    try:
        with _collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_restarts_when_a_load_fails() -> None:
    try:
        with _collector_paused():
            raise ConnectionError("the database went away")
    except ConnectionError:
        pass
    assert gc.isenabled()
