"""Observability beyond metrics: OpenTelemetry tracing (off by default, ``BACKLANE_TRACING__*``).

:mod:`~backlane.observability.carrier` says where a message carries its trace context and reads
it (no OpenTelemetry import: the MassTransit adapter and the signing rules use it with tracing
off); :mod:`~backlane.observability.tracing` builds the SDK from the settings;
:mod:`~backlane.observability.middleware` is the Dramatiq middleware making the spans.
"""
