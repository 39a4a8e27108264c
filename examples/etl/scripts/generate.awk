# Writes `rows` sales records: order,date,region,product,units,unit_price.
# Seeded, so every run makes the same file (and `clean` stays done).
BEGIN {
    srand(42)
    split("north south east west", regions, " ")
    split("apple pear fig plum", products, " ")
    split("1.20 0.95 2.40 1.10", prices, " ")
    print "order,date,region,product,units,unit_price"
    for (i = 1; i <= rows; i++) {
        r = regions[int(rand() * 4) + 1]
        p = int(rand() * 4) + 1
        day = sprintf("2026-%02d-%02d", int(rand() * 12) + 1, int(rand() * 28) + 1)
        units = int(rand() * 50) + 1
        line = i "," day "," r "," products[p] "," units "," prices[p]
        x = rand()
        if (x < 0.01) line = i "," day ",," products[p] "," units "," prices[p] # missing region
        else if (x < 0.02) line = i "," day "," r "," products[p] ",many," prices[p]
        else if (x < 0.03) { print line }                       # sent twice
        else if (x < 0.04) line = toupper(line)                # shouting export
        print line
    }
}
