"""IA Continu operator console (Streamlit): drives flow runs through the Prefect API and
shows the loop; it never trains."""
