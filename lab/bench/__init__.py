"""The benchmark: one configuration of the whole system per run, measured end to end (`spec`
says what a run is, `load` drives it, `meters` prices it, `ceiling` gives the naive bound,
`measure` runs it, `report` prints it)."""
