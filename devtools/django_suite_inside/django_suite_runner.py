"""The test runner Django's ``tests/runtests.py`` uses for the oracle: it records each test's
outcome by test id into a JSON file, so that nothing is read back from console output.

Runs inside Django's test process (the baked project's Python: Django and the standard library
only). ``DJANGO_SUITE_RESULTS`` names the file written once the suite has run::

    {"outcomes": {test id: outcome}, "details": {test id: traceback}}

An outcome is ``ok``, ``failure``, ``error``, ``skipped``, ``expected failure`` or
``unexpected success``; a test with a failing subtest is a ``failure`` (or ``error``) under
its own id, as unittest counts it.
"""

import functools
import json
import os
import traceback
import unittest

from django.test.runner import (
    DiscoverRunner,
    ParallelTestSuite,
    RemoteTestResult,
    RemoteTestRunner,
)

# Only the end of a traceback is kept: it names the assertion or the exception.
DETAIL_CHARACTERS = 3000
# The worse outcome wins when one test reports several (a subtest failed, then the test ended).
RANK = {"ok": 0, "skipped": 0, "expected failure": 0, "failure": 1, "unexpected success": 1}
RANK["error"] = 2


class TracebackText(Exception):
    """An exception reduced to its formatted traceback: it pickles without tblib."""

    def __str__(self):
        return self.args[0]


class FailureText(TracebackText, AssertionError):
    """A failed assertion reduced to its formatted traceback: still a failure, not an error."""


def _as_text(err):
    """``err`` (an exc_info tuple) as one the parallel runner can send between processes.

    Django sends a worker's exceptions to the main process by pickling them, tracebacks
    included, which needs tblib: the projects do not install it, and one unpicklable failure
    would end the whole run instead of failing one test.
    """
    if err is None or issubclass(err[0], TracebackText):
        return err
    text = "".join(traceback.format_exception(*err))
    kind = FailureText if issubclass(err[0], AssertionError) else TracebackText
    return kind, kind(text), None


class TextResult(RemoteTestResult):
    """A parallel worker's result: Django's, with every exception sent as text and every
    event naming the test it is about.

    Django's worker names a test by the number of tests started so far. Since Python 3.12 a
    test of a class skipped whole, or a class's ``setUpClass`` error, is reported without
    being started, so the main process would pin it on the test started before it.
    """

    def __init__(self, places, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.places = places  # test id: its place in the subsuite

    def _about(self, test, *args):
        # The event Django just queued, naming the test by its place (or, for a class's
        # error, which has no place, by its id).
        self.events[-1] = (self.events[-1][0], self.places.get(test.id(), test.id()), *args)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._about(test)

    def addError(self, test, err):
        err = _as_text(err)
        super().addError(test, err)
        self._about(test, err)

    def addFailure(self, test, err):
        err = _as_text(err)
        super().addFailure(test, err)
        self._about(test, err)

    def addSubTest(self, test, subtest, err):
        err = _as_text(err)
        super().addSubTest(test, subtest, err)
        if err is not None:  # Django queues nothing for a subtest that passed
            self._about(test, subtest, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._about(test, reason)

    def addExpectedFailure(self, test, err):
        err = _as_text(err)
        super().addExpectedFailure(test, err)
        self._about(test, err)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._about(test)


class TextRunner(RemoteTestRunner):
    """Runs one subsuite in a worker, with a :class:`TextResult`."""

    def run(self, test):
        places = {case.id(): place for place, case in enumerate(test)}
        self.resultclass = functools.partial(TextResult, places)
        return super().run(test)


class TextParallelTestSuite(ParallelTestSuite):
    """Django's parallel suite, reading the events :class:`TextResult` queues."""

    runner_class = TextRunner

    def handle_event(self, result, tests, event):
        name, *rest = event
        handler = getattr(result, name, None)
        if handler is None or not rest:
            return
        where, *args = rest
        test = tests[where] if isinstance(where, int) else unittest.suite._ErrorHolder(where)
        handler(test, *args)


class RecordingResult(unittest.TextTestResult):
    """unittest's console result that also keeps every test's outcome by id."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}
        self.details = {}

    def _record(self, test, outcome, err=None):
        test_id = test.id()
        if RANK[outcome] >= RANK[self.outcomes.get(test_id, "ok")]:
            self.outcomes[test_id] = outcome
        if err is not None and RANK[outcome]:
            text = (
                str(err[1])
                if isinstance(err[1], TracebackText)
                else self._exc_info_to_string(err, test)
            )
            self.details[test_id] = text[-DETAIL_CHARACTERS:]

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "ok")

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(test, "failure" if failed else "error", err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected success")


class RecordingRunner(DiscoverRunner):
    """Django's runner, recording outcomes by test id (``DJANGO_SUITE_RESULTS``)."""

    parallel_test_suite = TextParallelTestSuite

    def get_resultclass(self):
        return super().get_resultclass() or RecordingResult

    def run_suite(self, suite, **kwargs):
        result = super().run_suite(suite, **kwargs)
        record = {
            "outcomes": getattr(result, "outcomes", {}),
            "details": getattr(result, "details", {}),
        }
        with open(os.environ["DJANGO_SUITE_RESULTS"], "w", encoding="utf-8") as file:
            json.dump(record, file, indent=1, sort_keys=True)
        return result
