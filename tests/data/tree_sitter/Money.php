<?php

namespace Shop;

/**
 * Converts an amount between two currencies at a fixed rate.
 *
 * @param float $amount the amount to convert
 * @param float $rate units of the target currency per unit of the source
 * @return float
 */
function convert(float $amount, float $rate): float
{
    return round($amount * $rate, 2);
}

/**
 * An amount of money in one currency.
 */
final class Money
{
    /**
     * Creates an amount from a number of cents and a currency code.
     */
    public function __construct(private int $cents, private string $currency)
    {
        $this->currency = strtoupper($currency);
    }

    /**
     * Adds another amount of the same currency and returns the sum.
     *
     * @throws \InvalidArgumentException when the currencies differ
     */
    #[\ReturnTypeWillChange]
    public function add(Money $other): Money
    {
        if ($other->currency !== $this->currency) {
            throw new \InvalidArgumentException('currency mismatch');
        }
        return new Money($this->cents + $other->cents, $this->currency);
    }

    /**
     * {@inheritdoc}
     */
    public function __toString(): string
    {
        return sprintf('%d.%02d %s', intdiv($this->cents, 100), $this->cents % 100,
            $this->currency);
    }
}
