"""What the analyst writes down: notes on cells and images (``notes``), and the findings sheet made
of them: each note with its evidence, read from the run's kept maps and concepts (``evidence``), as
an HTML page (``findings``) and as a PDF figure (``findings_pdf``).
"""
