"""What an operator sees of a worker: its metrics (`metrics`) and what its log lines say
about where they come from (`context`). Foundations: every layer records here, and this
package imports nothing of `chat`."""
