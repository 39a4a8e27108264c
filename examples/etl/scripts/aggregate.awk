# region,product,revenue,units for every pair, from the clean rows.
NR == 1 { next }
{
    key = $3 "," $4
    revenue[key] += $5 * $6
    units[key] += $5
}
END {
    for (key in revenue) printf "%s,%.2f,%d\n", key, revenue[key], units[key]
}
