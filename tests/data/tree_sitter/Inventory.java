/*
 * A licence header: a block comment, not a doc comment.
 */
package org.example.shop;

import java.util.HashMap;
import java.util.Map;

/**
 * Counts items in stock.
 */
public class Inventory {
    private final Map<String, Integer> counts = new HashMap<>();

    /**
     * Creates an empty inventory.
     */
    public Inventory() {
        super();
        counts.clear();
    }

    /**
     * Adds {@code amount} units of an item, creating it if needed.
     *
     * <p>Negative amounts are rejected.
     *
     * @param item the item's name
     * @param amount how many units to add
     * @throws IllegalArgumentException if {@code amount} is negative
     */
    @Deprecated
    public void add(String item, int amount) {
        if (amount < 0) {
            throw new IllegalArgumentException("negative amount: " + amount);
        }
        counts.merge(item, amount, Integer::sum);
    }

    /** Returns the number of units of {@link #add item}, or zero. */
    public int count(String item) {
        // a missing item has no units
        return counts.getOrDefault(item, 0);
    }

    /**
     * {@inheritDoc}
     */
    @Override
    public String toString() {
        return "Inventory" + counts;
    }

    /** Abstract-like: no body in an interface. */
    interface Listener {
        /** Called when the stock of an item changes. */
        void changed(String item);
    }

    /**
     * Compares two inventories item by item.
     */
    static final class Comparison {
        /**
         * Whether the two inventories hold the same items.
         */
        boolean same(Inventory a, Inventory b) {
            return a.counts.equals(b.counts);
        }
    }
}
