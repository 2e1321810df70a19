# frozen_string_literal: true

module Collections
  # A last-in, first-out stack of values.
  class Stack
    # Creates an empty stack; +items+ are pushed in order.
    def initialize(*items)
      @items = []
      items.each { |item| push(item) }
    end

    # call-seq:
    #   push(item) -> self
    #
    # Puts +item+ on top of the stack and returns the stack.
    def push(item)
      @items.push(item)
      self
    end

    # Removes and returns the top item.
    # Raises an error when the stack is empty.
    #
    # @return [Object] the former top item
    def pop
      raise IndexError, "empty stack" if @items.empty?

      @items.pop
    end

    # Builds a stack from the elements of any enumerable.
    def self.from(enumerable)
      stack = new
      enumerable.each { |item| stack.push(item) }
      stack
    end

    def size
      @items.size
    end

    # TODO: make this faster for very large stacks please
    def to_a
      @items.dup
    end
  end
end
