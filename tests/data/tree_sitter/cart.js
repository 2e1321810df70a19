/**
 * @license MIT
 */
'use strict';

/**
 * Adds up the prices of the items in a cart.
 *
 * @param {Array<{price: number}>} items the cart's items
 * @returns {number} the total price
 */
function total(items) {
  let sum = 0;
  for (const item of items) sum += item.price;
  return sum;
}

/**
 * Formats a price in cents as a string with two decimals.
 */
export const formatPrice = (cents) => {
  const units = Math.floor(cents / 100);
  return `${units}.${String(cents % 100).padStart(2, '0')}`;
};

/** A shopping cart with a list of items. */
class Cart {
  /**
   * Creates an empty cart for one customer.
   */
  constructor(customer) {
    this.customer = customer;
    this.items = [];
  }

  /**
   * Puts an item into the cart and returns the cart.
   */
  add(item) {
    this.items.push(item);
    return this;
  }
}

/**
 * Removes every item from the cart at once.
 */
Cart.prototype.clear = function () {
  this.items.length = 0;
  return this;
};

const helpers = {
  /**
   * Tells whether a cart has no items at all.
   */
  isEmpty: function (cart) {
    const n = cart.items.length;
    return n === 0;
  },
};

/**
 * Too short to keep, one line.
 */
function noop() {}

// A line comment is not a doc comment for JavaScript.
function undocumented(a) {
  const b = a + 1;
  return b;
}

setTimeout(function () {
  total([]);
}, 10);

module.exports = { total, Cart, helpers, noop, undocumented };
