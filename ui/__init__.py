"""mk1's Streamlit UI: app.py (the page), data.py (talks to mk1), views.py (draws it)."""
