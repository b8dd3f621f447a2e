"""The dashboard's panes, tables and form widgets."""
