"""The Textual dashboard: app, panes, dialogs and screens over snaptui.core."""
