"""The Streamlit app: pages, navigation and the widgets they share (the product itself is `embedder`)."""
