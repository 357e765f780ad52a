"""Settings, names, the calendar and the outcome-event format every stage shares; imports no other stage."""
